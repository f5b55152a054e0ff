package provision

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/transport"
)

// ChargeLimitRulePath holds a phone's charge limit across reboots: udev
// writes it into the battery's charge_control_end_threshold when the
// battery appears at boot.
const ChargeLimitRulePath = "/etc/udev/rules.d/90-phonefarm-charge-limit.rules"

// chargeLimitStep writes the battery's charge limit into the kernel now.
type chargeLimitStep struct {
	file       string // the battery's charge_control_end_threshold
	old, limit int
}

func (s *chargeLimitStep) Title() string {
	return fmt.Sprintf("hold the battery at %d%% %s", s.limit, s.file)
}
func (s *chargeLimitStep) Why() string { return fmt.Sprintf("the kernel holds it at %d%%", s.old) }

func (s *chargeLimitStep) Changes() []Change {
	return []Change{{Resource: "battery charge limit", Old: strconv.Itoa(s.old), New: strconv.Itoa(s.limit)}}
}

func (s *chargeLimitStep) Apply(ctx context.Context, t *Target) error {
	// A driver may round or refuse a value: what it holds afterwards is
	// what counts.
	f := transport.Quote(s.file)
	out, err := transport.Output(ctx, t.Host, fmt.Sprintf("echo %d > %s && cat %s", s.limit, f, f))
	if err != nil {
		return fmt.Errorf("write the charge limit to %s: %w", s.file, err)
	}
	if got, _ := strconv.Atoi(strings.TrimSpace(out)); got != s.limit {
		return fmt.Errorf("the battery driver holds %s at %q after phonefarm wrote %d; this phone's kernel does not take that limit", s.file, strings.TrimSpace(out), s.limit)
	}
	return nil
}

// chargeLimitRule is the udev rule that sets the limit at boot.
func chargeLimitRule(file string, limit int) []byte {
	supply := path.Base(path.Dir(file))
	return fmt.Appendf(nil, "# phonefarm: hold the battery at %d%% on the charger (power.chargeLimit in the inventory).\n"+
		"SUBSYSTEM==\"power_supply\", KERNEL==\"%s\", ATTR{charge_control_end_threshold}=\"%d\"\n", limit, supply, limit)
}

// powerSteps hold the battery at the inventory's charge limit, or say why
// they cannot.
func powerSteps(limit int, b *facts.Battery, st State) ([]Step, []string) {
	switch {
	case limit == 0:
		return nil, nil
	case b == nil:
		return nil, []string{fmt.Sprintf("power.chargeLimit %d: the phone reports no battery", limit)}
	case b.ChargeLimitFile == "":
		return nil, []string{fmt.Sprintf("power.chargeLimit %d: this phone's kernel has no charge_control_end_threshold for its battery, so phonefarm cannot hold it there; keep it off the charger part of the time instead", limit)}
	}
	var steps []Step
	if b.ChargeLimit != limit {
		steps = append(steps, &chargeLimitStep{file: b.ChargeLimitFile, old: b.ChargeLimit, limit: limit})
	}
	rule := chargeLimitRule(b.ChargeLimitFile, limit)
	if cur := st.Files[ChargeLimitRulePath].SHA256; cur != sha(rule) {
		steps = append(steps, &fileStep{path: ChargeLimitRulePath, mode: 0o644, content: rule, title: "write udev rule",
			why: whyFile(st, ChargeLimitRulePath, true, ""), old: cur})
	}
	return steps, nil
}
