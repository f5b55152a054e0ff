package provision

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseStateTailscale(t *testing.T) {
	out := `file:/usr/local/bin/k3s=` + "abc 100" + `
ts.running=1
ts.installed=/usr/local/bin/tailscale
ts.status.begin
{
  "Version": "1.102.5-ERR-BuildInfo",
  "BackendState": "Running",
  "TailscaleIPs": [
    "100.64.0.2",
    "fd7a:115c:a1e0::2"
  ],
  "Self": {
    "ID": "2",
    "PublicKey": "nodekey:261e",
    "HostName": "server1",
    "DNSName": "server1.farm.test.",
    "TailscaleIPs": [
      "100.64.0.2",
      "fd7a:115c:a1e0::2"
    ]
  }
}ts.status.end
ts.prefs.begin
{
	"ControlURL": "http://10.99.10.1:8081",
	"RouteAll": false
}
ts.prefs.end
addr=eth0 10.99.10.11
end=1
`
	s, err := parseState(out)
	if err != nil {
		t.Fatal(err)
	}
	want := TailscaleState{Installed: "/usr/local/bin/tailscale", Running: true, BackendState: "Running", HostName: "server1",
		DNSName: "server1.farm.test.", IPs: []string{"100.64.0.2", "fd7a:115c:a1e0::2"}, ControlURL: "http://10.99.10.1:8081"}
	if diff := cmp.Diff(want, s.Tailscale); diff != "" {
		t.Errorf("tailscale state (-want +got):\n%s", diff)
	}
	if got := s.Tailscale.IPv4(); got != "100.64.0.2" {
		t.Errorf("IPv4: got %q", got)
	}
	if got := (File{SHA256: "abc", Mtime: 100}); s.Files["/usr/local/bin/k3s"] != got {
		t.Errorf("file: got %+v", s.Files["/usr/local/bin/k3s"])
	}
}
