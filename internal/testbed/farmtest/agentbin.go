package farmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// AgentEnv names a phonefarm-agent built beforehand (scripts/test.sh
// builds one for every package's tests).
const AgentEnv = "PHONEFARM_TEST_AGENT"

var agent struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// AgentBinary is a static phonefarm-agent for this machine, as a phone
// gets one (CGO off): $PHONEFARM_TEST_AGENT when set, else built once per
// test process, so tests running side by side do not each compile it.
func AgentBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(AgentEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", AgentEnv, err)
		}
		return p
	}
	agent.once.Do(func() {
		dir, err := os.MkdirTemp("", "phonefarm-agent-")
		if err != nil {
			agent.err = err
			return
		}
		agent.path = filepath.Join(dir, "phonefarm-agent")
		build := exec.Command("go", "build", "-o", agent.path, "github.com/phonefarm/phonefarm/cmd/phonefarm-agent")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		agent.out, agent.err = build.CombinedOutput()
	})
	if agent.err != nil {
		t.Fatalf("build the agent: %v\n%s", agent.err, agent.out)
	}
	return agent.path
}
