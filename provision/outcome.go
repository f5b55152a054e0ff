package provision

import (
	"errors"
	"fmt"
)

// Sentinels a caller branches on: errors.Is finds them in a PhonePlan's
// Blocked, a PhoneResult's Err and a Summary's Err.
var (
	// ErrBlocked: the phone cannot be provisioned now; the plan says why.
	ErrBlocked = errors.New("blocked")
	// ErrUnreachable: the phone could not be reached or read.
	ErrUnreachable = errors.New("unreachable")
	// ErrPreflight: the phone failed checks that were not skipped.
	ErrPreflight = errors.New("preflight checks failed")
	// ErrStepFailed: a step of the phone's plan failed.
	ErrStepFailed = errors.New("step failed")
	// ErrInterrupted: apply was cancelled before the phone's last step.
	ErrInterrupted = errors.New("interrupted")
)

// BlockedError is why a phone is blocked. It is ErrBlocked, and its Kind
// (ErrUnreachable, ErrPreflight) when that is the cause.
type BlockedError struct {
	Kind   error // ErrBlocked, ErrUnreachable or ErrPreflight
	Reason string
	Err    error // the underlying error, when there is one
}

func (e *BlockedError) Error() string { return e.Reason }
func (e *BlockedError) Unwrap() error { return e.Err }

func (e *BlockedError) Is(target error) bool {
	return target == ErrBlocked || target == e.Kind
}

func blocked(reason string) error { return &BlockedError{Kind: ErrBlocked, Reason: reason} }

func blockedf(format string, args ...any) error { return blocked(fmt.Sprintf(format, args...)) }

// StepError is a step that failed on a phone: ErrStepFailed, and the
// step's own error (errors.Is and As reach it).
type StepError struct {
	Phone, Step string
	Err         error
}

func (e *StepError) Error() string        { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error        { return e.Err }
func (e *StepError) Is(target error) bool { return target == ErrStepFailed }
