package text

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestTextAndBinary(t *testing.T) {
	for in, want := range map[string]string{
		"hello\n": `"hello\n"`, "": `""`, "héllo": `"héllo"`, "\xff\x00": `{"base64":"/wA="}`, "\x01\x02\x03\x04\x05\x06": `{"base64":"AQIDBAUG"}`,
	} {
		b, err := json.Marshal(Bytes(in))
		if err != nil || string(b) != want {
			t.Errorf("Marshal(%q) = %s, %v; want %s", in, b, err, want)
		}
		var back Bytes
		if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back, []byte(in)) {
			t.Errorf("%s read back as %q, %v", b, back, err)
		}
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("ok\n"))
	f.Add([]byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, in []byte) {
		b, err := json.Marshal(Bytes(in))
		if err != nil {
			t.Fatal(err)
		}
		var back Bytes
		if limit := len(in)*4/3 + 32; len(b) > limit {
			t.Fatalf("%d bytes took %d in JSON, more than %d", len(in), len(b), limit)
		}
		if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back, in) {
			t.Fatalf("%q -> %s -> %q (%v)", in, b, back, err)
		}
		var any Bytes
		_ = json.Unmarshal(in, &any) // arbitrary input never panics
	})
}
