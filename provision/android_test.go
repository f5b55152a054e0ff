package provision

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestConnectivityDNS(t *testing.T) {
	tests := []struct {
		name string
		dump string
		want []string
	}{
		{
			name: "Android 12: the default network's servers, not another network's",
			dump: `Active default network: 101
  NetworkAgentInfo{network{100}  handle{432902426637}  ni{MOBILE CONNECTED extra: internet} lp{{InterfaceName: rmnet0 LinkAddresses: [ 10.1.2.3/30 ] DnsAddresses: [ /10.177.0.34,/10.177.0.210 ] Domains: null MTU: 1500}}
  NetworkAgentInfo{network{101}  handle{437197393933}  ni{WIFI CONNECTED extra: } lp{{InterfaceName: wlan0 LinkAddresses: [ fe80::1/64,192.168.1.45/24 ] DnsAddresses: [ /192.168.1.1,/fd00::1 ] Domains: lan MTU: 0}}`,
			want: []string{"192.168.1.1", "fd00::1"},
		},
		{
			name: "Android 9",
			dump: `Active default network: 100
NetworkAgentInfo [WIFI () - 100] network{100} lp{{InterfaceName: wlan0 LinkAddresses: [192.168.0.9/24,] DnsAddresses: [ /192.168.0.1,/8.8.8.8,/8.8.4.4,/1.1.1.1 ] UsePrivateDns: false}}`,
			want: []string{"192.168.0.1", "8.8.8.8", "8.8.4.4"},
		},
		{
			name: "no default network: the first list",
			dump: `  NetworkAgentInfo{network{100} lp{{DnsAddresses: [ /10.0.0.53 ]}}`,
			want: []string{"10.0.0.53"},
		},
		{name: "nothing readable", dump: "Can't find service: connectivity", want: nil},
		{name: "an empty list", dump: "Active default network: 100\n network{100} DnsAddresses: [ ] Domains", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ConnectivityDNS(strings.Split(tt.dump, "\n"))); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
