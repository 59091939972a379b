package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
	"github.com/dms-project/dms/resources"
)

// Errors of the API itself. The node's own errors (node.ErrNotFound,
// onboarding.ErrActiveAllocations, ...) cross the socket as codes and come
// out of the client as the same sentinels, so errors.Is works on either
// side of it.
var (
	// ErrNoNode: no node answers on the home's control socket.
	ErrNoNode = errors.New("no dms node is running")
	// ErrBadRequest: the call itself was malformed (a body that does not
	// decode, a missing job ID). A command line maps it to a usage error.
	ErrBadRequest = errors.New("bad request")
)

// codes are the sentinel errors that survive the socket, with the HTTP
// status each is answered with. Add one where a caller branches on
// errors.Is for an error a running node returns.
var codes = []struct {
	code   string
	err    error
	status int
}{
	{"bad_request", ErrBadRequest, http.StatusBadRequest},
	{"not_found", node.ErrNotFound, http.StatusNotFound},
	{"ambiguous", node.ErrAmbiguous, http.StatusBadRequest},
	{"invalid_offer", onboarding.ErrInvalidOffer, http.StatusBadRequest},
	{"incomplete_offer", onboarding.ErrIncompleteOffer, http.StatusBadRequest},
	{"active_allocations", onboarding.ErrActiveAllocations, http.StatusConflict},
	{"below_locked", onboarding.ErrBelowLocked, http.StatusConflict},
	{"home_in_use", resources.ErrHomeInUse, http.StatusConflict},
	{"not_initialized", home.ErrNotInitialized, http.StatusConflict},
	{"node_stopping", node.ErrStopping, http.StatusServiceUnavailable},
	{"unauthorized", ErrUnauthorized, http.StatusUnauthorized},
}

// wireError is the body of a failed call. Offer and Missing carry the
// fields of the typed offer errors, which a command line turns into the
// flag they name. Result is the reply the call returned alongside its
// error, when it has one worth reading (a refused offboarding lists the
// allocations in its way).
type wireError struct {
	Error   string                 `json:"error"`
	Code    string                 `json:"code,omitempty"`
	Offer   *onboarding.OfferError `json:"offer,omitempty"`
	Missing []string               `json:"missing,omitempty"`
	Result  json.RawMessage        `json:"result,omitempty"`
}

func toWire(err error) (*wireError, int) {
	w := &wireError{Error: err.Error()}
	status := http.StatusInternalServerError
	for _, c := range codes {
		if errors.Is(err, c.err) {
			w.Code, status = c.code, c.status
			break
		}
	}
	var oe *onboarding.OfferError
	if errors.As(err, &oe) {
		w.Offer = oe
	}
	var me *onboarding.MissingError
	if errors.As(err, &me) {
		w.Missing = me.Fields
	}
	return w, status
}

// fromWire rebuilds a node's error on the client's side.
func fromWire(w *wireError) error {
	switch {
	case w.Offer != nil:
		return w.Offer
	case len(w.Missing) > 0:
		return &onboarding.MissingError{Fields: w.Missing}
	}
	for _, c := range codes {
		if c.code == w.Code {
			return &remoteError{msg: w.Error, err: c.err}
		}
	}
	return errors.New(w.Error)
}

// remoteError is a node's message with the sentinel beneath it.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// badRequest marks err as the caller's mistake.
func badRequest(err error) error { return &remoteError{msg: err.Error(), err: ErrBadRequest} }
