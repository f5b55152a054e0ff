package cli

import "testing"

// The plugin's version is a release's own, and 0.1.0 for any build from a
// checkout, so `pulumi plugin install resource phonefarm 0.1.0` fits it.
func TestPluginVersion(t *testing.T) {
	for v, want := range map[string]string{
		"":                                   "0.1.0",
		"(devel)":                            "0.1.0",
		"v0.0.0-20261206110000-d3b5edf12345": "0.1.0",
		"v0.0.0-20261206110000-d3b5edf12345+dirty": "0.1.0",
		"v1.2.4-0.20261206110000-d3b5edf12345":     "0.1.0",
		"v1.2.3":                                   "1.2.3",
		"v1.3.0-rc.1":                              "1.3.0-rc.1",
	} {
		if got := pluginVersion(v); got != want {
			t.Errorf("pluginVersion(%q) = %q, want %q", v, got, want)
		}
	}
}
