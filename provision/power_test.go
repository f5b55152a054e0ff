package provision

import (
	"strings"
	"testing"

	"github.com/phonefarm/phonefarm/facts"
	"github.com/phonefarm/phonefarm/inventory"
)

// power.chargeLimit: the kernel's threshold is written now and a udev
// rule keeps it at boot; a second plan has nothing to do; a phone's own
// limit wins over the farm's; a phone without the knob gets a note.
func TestPlanChargeLimit(t *testing.T) {
	const file = "/sys/class/power_supply/battery/charge_control_end_threshold"
	in := freshInput(t)
	in.Farm.Power = &inventory.Power{ChargeLimit: 80}
	for i := range in.Phones {
		pi := &in.Phones[i]
		switch pi.Phone.Name {
		case "enchilada":
			pi.Facts.Battery = &facts.Battery{CapacityPercent: 90, Status: "Charging", ChargeLimitFile: file, ChargeLimit: 100}
		case "fajita":
			pi.Phone.Power = &inventory.Power{ChargeLimit: 60}
			pi.Facts.Battery = &facts.Battery{CapacityPercent: 90, Status: "Charging", ChargeLimitFile: file, ChargeLimit: 100}
		case "thinkpad":
			pi.Facts.Battery = &facts.Battery{CapacityPercent: 50, Status: "Discharging"}
		}
	}
	plan := Compute(in)
	for phone, limit := range map[string]string{"enchilada": "80", "fajita": "60"} {
		pp := phonePlan(t, plan, phone)
		var hold *chargeLimitStep
		var rule *fileStep
		for _, s := range pp.Steps {
			switch s := s.(type) {
			case *chargeLimitStep:
				hold = s
			case *fileStep:
				if s.path == ChargeLimitRulePath {
					rule = s
				}
			}
		}
		if hold == nil || rule == nil {
			t.Fatalf("%s: steps %q, want the charge limit held and a udev rule", phone, titles(pp))
		}
		if c := hold.Changes(); len(c) != 1 || c[0].Old != "100" || c[0].New != limit {
			t.Errorf("%s: charge limit change %+v, want 100 => %s", phone, c, limit)
		}
		if want := `KERNEL=="battery", ATTR{charge_control_end_threshold}="` + limit + `"`; !strings.Contains(string(rule.content), want) {
			t.Errorf("%s: udev rule %q lacks %s", phone, rule.content, want)
		}
	}
	thinkpad := phonePlan(t, plan, "thinkpad")
	if !strings.Contains(strings.Join(thinkpad.Notes, "\n"), "no charge_control_end_threshold") {
		t.Errorf("thinkpad has no charge limit knob; notes %q do not say so", thinkpad.Notes)
	}
	for _, s := range thinkpad.Steps {
		if _, ok := s.(*chargeLimitStep); ok {
			t.Errorf("thinkpad: a charge limit step without a knob to write")
		}
	}

	again := Compute(converge(t, in))
	for _, phone := range []string{"enchilada", "fajita"} {
		if steps := titles(phonePlan(t, again, phone)); len(steps) != 0 {
			t.Errorf("%s after apply: steps %q, want none", phone, steps)
		}
	}
}

// health: every k3s phone gets the reporter after its node registers
// (binary, credentials, service, start), a converged phone nothing, a
// phone without a binary for its architecture a note, and a farm that
// drops the block the reporter's removal.
func TestPlanHealth(t *testing.T) {
	in := freshInput(t)
	in.Farm.Health = &inventory.Health{Agent: map[string]string{"arm64": "bin/phonefarm-agent"}, BatteryLowPercent: 25}
	in.HealthAgents = map[string]Artifact{"arm64": {Arch: "arm64", Version: "(local)", Path: "/cache/agent", SHA256: strings.Repeat("d", 64), Size: 20 << 20}}
	in.Phones[1].Facts.Arch = "arm" // fajita: no binary
	in.Artifacts["arm"] = art
	plan := Compute(in)
	got := titles(phonePlan(t, plan, "enchilada"))
	want := []string{"upload phonefarm-agent (arm64, 20 MB)", "write health credentials " + HealthKubeconfigPath,
		"write openrc service phonefarm-health /etc/init.d/phonefarm-health", "restart phonefarm-health"}
	if len(got) < len(want) || strings.Join(got[len(got)-len(want):], "|") != strings.Join(want, "|") {
		t.Errorf("enchilada's last steps: %q, want them to end with %q", got, want)
	}
	for _, s := range phonePlan(t, plan, "enchilada").Steps {
		if f, ok := s.(*fileStep); ok && f.path == "/etc/init.d/phonefarm-health" {
			if !strings.Contains(string(f.content), `-node enchilada -battery-low 25`) {
				t.Errorf("the reporter's service does not pass the node and threshold:\n%s", f.content)
			}
		}
	}
	fajita := phonePlan(t, plan, "fajita")
	if !strings.Contains(strings.Join(fajita.Notes, "\n"), "no phonefarm-agent binary for arm") {
		t.Errorf("fajita (arm, no binary): notes %q", fajita.Notes)
	}
	if strings.Contains(strings.Join(titles(fajita), "|"), "phonefarm-health") {
		t.Errorf("fajita has no binary but gets the reporter: %q", titles(fajita))
	}

	conv := converge(t, in)
	if steps := titles(phonePlan(t, Compute(conv), "enchilada")); len(steps) != 0 {
		t.Errorf("enchilada with the reporter running: steps %q, want none", steps)
	}
	conv.Farm.Health = nil
	if steps := titles(phonePlan(t, Compute(conv), "enchilada")); len(steps) != 1 || steps[0] != "remove the health reporter" {
		t.Errorf("enchilada after the health block went: steps %q, want the reporter removed", steps)
	}
}
