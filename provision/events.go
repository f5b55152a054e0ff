package provision

import "time"

// Event is one thing Apply did. Apply sends events from as many goroutines
// as phones it works on at once, so an observer must be safe for
// concurrent use and quick (it runs on the apply's path); events of one
// phone arrive in the order they happened, events of different phones
// interleave.
type Event interface{ event() }

// Phase is a stage of Apply across the farm.
type Phase string

const (
	// PhasePrepare: every phone's own steps (firewall, binaries, files).
	PhasePrepare Phase = "prepare"
	// PhaseFirstServer: the first server starts the cluster.
	PhaseFirstServer Phase = "first server"
	// PhaseServers: other servers join, one at a time.
	PhaseServers Phase = "servers"
	// PhaseAgents: agents join.
	PhaseAgents Phase = "agents"
	// PhaseSettle: waits for Ready and label changes, on every phone.
	PhaseSettle Phase = "settle"
	// PhaseRolling: an upgrade, one phone at a time.
	PhaseRolling Phase = "rolling upgrade"
)

// PhaseStarted: Apply entered a phase, with the phones it works on there.
type PhaseStarted struct {
	Phase  Phase
	Phones []string
	At     time.Time
}

// StepStarted: a phone's step began (Index of Total, from 0).
type StepStarted struct {
	Phone        string
	Index, Total int
	Step         Step
	At           time.Time
}

// StepDone: a phone's step ended; Err is nil when it succeeded.
type StepDone struct {
	Phone        string
	Index, Total int
	Step         Step
	Err          error
	Elapsed      time.Duration
}

// Uploaded: bytes of the current step's upload to a phone so far.
type Uploaded struct {
	Phone       string
	Done, Total int64
}

// StepNote: what a long step (a wait for Ready) is waiting for, each time
// that changes.
type StepNote struct {
	Phone   string
	Message string
	At      time.Time
}

// PhoneDone: a phone's outcome, once Apply is over.
type PhoneDone struct {
	Result PhoneResult
}

func (PhaseStarted) event() {}
func (StepStarted) event()  {}
func (StepDone) event()     {}
func (Uploaded) event()     {}
func (StepNote) event()     {}
func (PhoneDone) event()    {}
