package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/phonefarm/phonefarm/nodes"
)

func newNodesCmd(e *env) *cobra.Command {
	var farmF farmFlag
	var out outputFlag
	var par int
	var watch bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "nodes",
		Short: "Show each phone as a node: status, role, version, battery, temperature, pods",
		Long: `Nodes joins the cluster and the phones: for each phone of the inventory its
node's status (Ready, conditions that report a problem, taints), what runs it
(k3s server, k3s agent, phonefarm's rootless agent), the version it reports,
its addresses, the pods running on it, and from the phone itself its battery
(level, charging or on battery, charge limit), temperature, throttling and
uptime. A phone that is not in the cluster, and a node that is in no
inventory, are shown as such.

--watch redraws when the view changes: on every change of a node or pod in
the cluster (a watch on the API) and on the phones' facts, read again every
--interval. The exit status is 1 when the cluster or a phone could not be
read.`,
		Example: `  phonefarm nodes -f farm.yaml
  phonefarm nodes -f farm.yaml -o json
  phonefarm nodes -f farm.yaml --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fm, err := farmF.open(e)
			if err != nil {
				return err
			}
			printWarnings(e.stderr, fm.Warnings())
			ctx := cmd.Context()
			colour := isTTY(e.stdout) && os.Getenv("NO_COLOR") == ""
			if watch {
				if interval < time.Second {
					return fmt.Errorf("%w: --interval %s is too short; the phones are read over SSH or adb, give 1s or more", errUsage, interval)
				}
				tty := isTTY(e.stdout)
				err := nodes.Watch(ctx, fm, par, interval, func(view []nodes.Node, clusterErr error) {
					switch {
					case out.format == "json":
						_ = writeJSONLine(e.stdout, view)
					case tty:
						// Home and clear, then the table: a redraw in place.
						fmt.Fprint(e.stdout, "\x1b[H\x1b[2J")
						fmt.Fprintf(e.stdout, "%s  (every %s and on every change; Ctrl-C stops)\n\n", time.Now().Format("15:04:05"), interval)
						writeNodesTable(e.stdout, view, colour)
					default:
						fmt.Fprintf(e.stdout, "--- %s\n", time.Now().Format(time.RFC3339))
						writeNodesTable(e.stdout, view, false)
					}
					if clusterErr != nil {
						fmt.Fprintf(e.stderr, "%v\n", clusterErr)
					}
				})
				if err != nil || errors.Is(ctx.Err(), context.Canceled) {
					return err
				}
				return nil
			}
			view, clusterErr := nodes.Collect(ctx, fm, par)
			if out.format == "json" {
				if err := writeJSON(e.stdout, view); err != nil {
					return err
				}
			} else {
				writeNodesTable(e.stdout, view, colour)
			}
			failed := clusterErr != nil
			if clusterErr != nil {
				fmt.Fprintf(e.stderr, "%v\n", clusterErr)
			}
			for _, n := range view {
				failed = failed || n.Error != ""
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if failed {
				return exitError{code: 1}
			}
			return nil
		},
	}
	farmF.register(cmd)
	out.register(cmd)
	cmd.Flags().IntVar(&par, "parallel", 10, "phones to contact at once")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "keep showing the view, redrawn when it changes (json: one document per line)")
	cmd.Flags().DurationVar(&interval, "interval", 30*time.Second, "with --watch, how often the phones' facts are read again")
	return cmd
}

// writeJSONLine writes v as one line of JSON (JSON Lines, for --watch).
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}

// nodeCell is a table cell and the colour it is shown in.
type nodeCell struct {
	text   string
	colour string // an SGR code, "" for none
}

const (
	sgrGreen  = "32"
	sgrYellow = "33"
	sgrRed    = "31"
	sgrDim    = "2"
)

func writeNodesTable(w io.Writer, view []nodes.Node, colour bool) {
	head := []string{"NAME", "STATUS", "RUNS", "VERSION", "ADDRESS", "BATTERY", "TEMP", "UPTIME", "PODS", "NOTES"}
	rows := [][]nodeCell{}
	for _, n := range view {
		rows = append(rows, nodeRow(n))
	}
	widths := make([]int, len(head))
	for i, h := range head {
		widths[i] = len(h)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c.text))
		}
	}
	var b strings.Builder
	line := func(cells []nodeCell) {
		for i, c := range cells {
			text := c.text
			if i < len(cells)-1 {
				text += strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c.text)+2)
			}
			if colour && c.colour != "" {
				text = "\x1b[" + c.colour + "m" + strings.TrimRight(text, " ") + "\x1b[0m" + text[len(strings.TrimRight(text, " ")):]
			}
			b.WriteString(text)
		}
		b.WriteString("\n")
	}
	hc := make([]nodeCell, len(head))
	for i, h := range head {
		hc[i] = nodeCell{text: h}
	}
	line(hc)
	for _, r := range rows {
		line(r)
	}
	io.WriteString(w, b.String())
}

func nodeRow(n nodes.Node) []nodeCell {
	status := nodeCell{text: "-", colour: sgrDim}
	switch {
	case !n.InCluster:
	case n.Ready == "True":
		status = nodeCell{text: "Ready", colour: sgrGreen}
	case n.Ready == "False":
		status = nodeCell{text: "NotReady", colour: sgrRed}
	default:
		status = nodeCell{text: "Unknown", colour: sgrRed}
	}
	var notes []string
	notesColour := ""
	if !n.InInventory {
		notes = append(notes, "not in the inventory")
		notesColour = sgrYellow
	}
	if n.InInventory && !n.InCluster && n.Role != "" {
		notes = append(notes, "not in the cluster")
		notesColour = sgrYellow
	}
	for _, c := range n.Conditions {
		notes = append(notes, c.Type)
		notesColour = sgrYellow
	}
	for _, t := range n.Taints {
		notes = append(notes, "taint "+t)
	}
	if n.Error != "" {
		notes = append(notes, "unreachable: "+n.Error)
		notesColour = sgrRed
	}
	address := strings.Join(n.Addresses, ",")
	if n.TailnetIP != "" && !strings.Contains(address, n.TailnetIP) {
		address = strings.TrimPrefix(address+",", ",") + n.TailnetIP + " (tailnet)"
	}
	battery, temp, uptime := nodeCell{text: "-"}, nodeCell{text: "-"}, nodeCell{text: "-"}
	if f := n.Facts; f != nil {
		if bt := f.Battery; bt != nil {
			state := strings.ToLower(bt.Status)
			if bt.OnBattery() {
				state = "on battery"
			}
			battery.text = fmt.Sprintf("%d%% %s", bt.CapacityPercent, state)
			if bt.ChargeLimitFile != "" && bt.ChargeLimit < 100 {
				battery.text += fmt.Sprintf(" (limit %d%%)", bt.ChargeLimit)
			}
			if bt.OnBattery() {
				battery.colour = sgrYellow
			}
		}
		if f.ThermalMaxC > 0 {
			temp.text = fmt.Sprintf("%.1f°C", f.ThermalMaxC)
			if f.ThermalMaxC >= 45 {
				temp.colour = sgrYellow
			}
		}
		if len(f.Throttled) > 0 {
			if temp.text == "-" {
				temp.text = "throttled"
			} else {
				temp.text += " throttled"
			}
			temp.colour = sgrYellow
		}
		if f.UptimeSeconds > 0 {
			uptime.text = shortDuration(time.Duration(f.UptimeSeconds) * time.Second)
		}
	}
	pods := "-"
	if n.InCluster {
		pods = fmt.Sprint(n.Pods)
	}
	return []nodeCell{
		{text: n.Name}, status, {text: orDash(n.Runtime)}, {text: orDash(n.KubeletVersion)}, {text: orDash(address)},
		battery, temp, uptime, {text: pods}, {text: orDash(strings.Join(notes, "; ")), colour: notesColour},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortDuration is d as kubectl shows ages: 45s, 12m, 5h3m, 3d4h.
func shortDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}
