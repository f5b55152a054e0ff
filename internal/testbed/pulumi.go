package testbed

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// PulumiVersion is the pulumi CLI and YAML language host that
// scripts/build-pulumi.sh builds from the module proxy.
const PulumiVersion = "v3.259.0-yaml1.38.1"

// PulumiCLI returns the directory holding pulumi and pulumi-language-yaml
// as scripts/build-pulumi.sh caches them.
func PulumiCLI() (string, error) {
	d := filepath.Join(DefaultCacheDir(), "pulumi", PulumiVersion+"-"+runtime.Version())
	waitBuilt(d)
	for _, b := range []string{"pulumi", "pulumi-language-yaml"} {
		if _, err := os.Stat(filepath.Join(d, b)); err != nil {
			return "", fmt.Errorf("no %s in %s; scripts/build-pulumi.sh builds it", b, d)
		}
	}
	return d, nil
}

// PulumiEnv is the environment the pulumi CLI (in cli) needs on this
// machine, with its home and file backend made under dir: nothing checks
// for updates or downloads plugins.
func PulumiEnv(cli, dir, passphrase string) ([]string, error) {
	for _, d := range []string{"home", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return []string{
		"PATH=" + cli + string(os.PathListSeparator) + os.Getenv("PATH"),
		"PULUMI_HOME=" + filepath.Join(dir, "home"),
		"PULUMI_BACKEND_URL=file://" + filepath.Join(dir, "state"),
		"PULUMI_CONFIG_PASSPHRASE=" + passphrase,
		"PULUMI_SKIP_UPDATE_CHECK=true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true",
	}, nil
}
