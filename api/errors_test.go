package api

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dms-project/dms/onboarding"
)

// Every sentinel a node may return comes out of the client as itself.
func TestErrorsKeepTheirKindAcrossTheWire(t *testing.T) {
	for _, c := range codes {
		err := fmt.Errorf("something: %w", c.err)
		w, status := toWire(err)
		if w.Code != c.code || status != c.status {
			t.Errorf("%v: code %q status %d, want %q %d", c.err, w.Code, status, c.code, c.status)
		}
		back := fromWire(w)
		if !errors.Is(back, c.err) || back.Error() != err.Error() {
			t.Errorf("%v came back as %v", err, back)
		}
	}
	oe := &onboarding.OfferError{Field: "cpu", Value: "9", Reason: "too much"}
	var got *onboarding.OfferError
	if back := fromWire(must(toWire(fmt.Errorf("onboard: %w", oe)))); !errors.As(back, &got) || *got != *oe || !errors.Is(back, onboarding.ErrInvalidOffer) {
		t.Errorf("offer error came back as %#v", back)
	}
	var me *onboarding.MissingError
	if back := fromWire(must(toWire(&onboarding.MissingError{Fields: []string{"memory", "disk"}}))); !errors.As(back, &me) || len(me.Fields) != 2 {
		t.Errorf("missing error came back as %#v", back)
	}
	if back := fromWire(must(toWire(errors.New("plain")))); back.Error() != "plain" {
		t.Errorf("plain error came back as %v", back)
	}
}

func must(w *wireError, _ int) *wireError { return w }
