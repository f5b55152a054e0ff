// Command upload writes one file to a phone with phonefarm's SSH transport
// (SFTP, concurrent writes, temp file + fsync + rename), for bench/upload.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/phonefarm/phonefarm/transport/ssh"
)

func main() {
	host := flag.String("host", "", "address")
	key := flag.String("key", "", "identity file")
	known := flag.String("known-hosts", "", "known_hosts file")
	src := flag.String("src", "", "local file")
	dst := flag.String("dst", "", "remote path")
	flag.Parse()
	if err := upload(context.Background(), *host, *key, *known, *src, *dst); err != nil {
		fmt.Fprintln(os.Stderr, "upload:", err)
		os.Exit(1)
	}
}

func upload(ctx context.Context, host, key, known, src, dst string) error {
	h, err := (&ssh.Dialer{}).Dial(ctx, ssh.Config{Name: "bench", Host: host, User: "root", IdentityFile: key, KnownHosts: known})
	if err != nil {
		return err
	}
	defer h.Close()
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return h.WriteFile(ctx, dst, 0o644, f)
}
