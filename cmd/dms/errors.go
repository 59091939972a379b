package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/dms-project/dms/api"
	"github.com/dms-project/dms/home"
	"github.com/dms-project/dms/node"
	"github.com/dms-project/dms/onboarding"
)

// Exit statuses: 0 success, 1 the command failed, 2 the command line was
// wrong (a bad or missing flag, an unknown command, no home yet).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	// exitInterrupted is the shell's for a command stopped by Ctrl-C.
	exitInterrupted = 130
)

// exitError ends dms with a status of its own: a job's exit code, 130 for
// an interrupted command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// usageError is a mistake in how dms was called. exitCode maps it to 2;
// everything else that fails is 1.
type usageError struct {
	msg string
	err error // optional cause, for errors.Is
}

func (e *usageError) Error() string { return e.msg }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return &usageError{msg: fmt.Sprintf(format, args...)} }

// badValue is the error for a flag value that does not parse: it names the
// flag, the value, and what the flag accepts.
func badValue(flag, value string, err error) error {
	return &usageError{msg: fmt.Sprintf("invalid value %q for --%s: %s", value, flag, accepts(err, value)), err: err}
}

// accepts drops the parser's own echo of the value (`size "4XB": want ...`)
// so the message says the value once.
func accepts(err error, value string) string {
	msg := err.Error()
	if i := strings.Index(msg, fmt.Sprintf("%q: ", value)); i >= 0 {
		return msg[i+len(fmt.Sprintf("%q: ", value)):]
	}
	return msg
}

// offerFlags names the onboard flag for each dimension of an offer.
var offerFlags = map[string]string{"cpu": "cpu", "memory": "memory", "disk": "disk", "gpu": "gpu", "price": "price", "executors": "executors"}

// classify turns the domain errors that mean "called wrongly" into usage
// errors, naming the flag where there is one.
func classify(err error) error {
	var ue *usageError
	if err == nil || errors.As(err, &ue) {
		return err
	}
	var oe *onboarding.OfferError
	if errors.As(err, &oe) {
		if f, ok := offerFlags[oe.Field]; ok {
			return &usageError{msg: fmt.Sprintf("invalid value %s for --%s: %s", oe.Value, f, oe.Reason), err: err}
		}
	}
	var me *onboarding.MissingError
	if errors.As(err, &me) {
		var flags []string
		for _, f := range me.Fields {
			flags = append(flags, "--"+f)
		}
		return &usageError{msg: fmt.Sprintf("missing required flag %s: a first offer needs --cpu (cores, e.g. 1 or 0.5), --memory and --disk (sizes, e.g. 1GiB)", joinFlags(flags)), err: err}
	}
	switch {
	case errors.Is(err, node.ErrNotFound):
		// An ID the caller gave; scripts tell "no such job" (2) from "the
		// node failed" (1).
		return &usageError{msg: err.Error() + " (dms job list shows the jobs submitted from it)", err: err}
	case errors.Is(err, home.ErrNotInitialized), errors.Is(err, home.ErrBadConfig), errors.Is(err, node.ErrAmbiguous), errors.Is(err, api.ErrBadRequest):
		return &usageError{msg: err.Error(), err: err}
	}
	return err
}

func joinFlags(fs []string) string {
	switch len(fs) {
	case 1:
		return fs[0]
	case 2:
		return fs[0] + " and " + fs[1]
	}
	return fmt.Sprintf("%s, %s and %s", fs[0], fs[1], fs[2])
}

func exitCode(err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee) && ee.code > 0 && ee.code < 256:
		return ee.code
	}
	return exitFailure
}
