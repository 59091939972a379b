// Package text is how job output travels as JSON: as text, not base64. A
// job's stdout and stderr are almost always UTF-8; those are a JSON
// string, which a script reads as it is. Output that is not valid UTF-8 is
// kept exact as {"base64": "..."} rather than mangled into replacement
// characters.
package text

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Bytes is output that JSON writes as a string when it is UTF-8.
type Bytes []byte

type binary struct {
	Base64 []byte `json:"base64"`
}

// MarshalJSON writes b as a string, or {"base64": ...} when it is not
// valid UTF-8 or when escaping would make it longer than base64 does
// (control characters take six bytes each as \u0000): an output chunk then
// never grows past 4/3 of its size, which the frame limits count on.
func (b Bytes) MarshalJSON() ([]byte, error) {
	if utf8.Valid(b) {
		s, err := json.Marshal(string(b))
		if err != nil || len(s) <= base64.StdEncoding.EncodedLen(len(b))+len(`{"base64":""}`) {
			return s, err
		}
	}
	return json.Marshal(binary{Base64: b})
}

// UnmarshalJSON reads a string or {"base64": ...}.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*b = nil
		return nil
	}
	if len(data) > 0 && data[0] == '{' {
		var v binary
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		*b = v.Base64
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("output: want a string or {\"base64\": ...}: %w", err)
	}
	*b = Bytes(s)
	return nil
}
