package kernelcfg

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// JUnit XML document, in the shape of the widely used Ant/Jenkins schema:
// <testsuites> of <testsuite name tests failures errors skipped> holding
// <properties> then <testcase name classname> elements.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	ID         int             `xml:"id,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes reports as JUnit XML: one test suite per configuration
// and one test case per checked option. A missing required option is a
// <failure>; a missing recommended one passes with a note in <system-out>;
// a rule that could not be evaluated is <skipped>.
func WriteJUnit(w io.Writer, reports []Report) error {
	doc := junitSuites{Name: "phonefarm kernelcfg"}
	for i, r := range reports {
		s := junitSuite{
			Name: r.Config, ID: i, Time: "0",
			Properties: []junitProperty{
				{Name: "kernelVersion", Value: r.Version},
				{Name: "arch", Value: r.Arch},
				{Name: "profiles", Value: strings.Join(r.Profiles, ",")},
				{Name: "verdict", Value: r.Verdict().String()},
			},
		}
		for _, res := range r.Results {
			c := junitCase{Name: res.ID, Classname: r.Config, Time: "0"}
			switch {
			case res.OK():
				c.SystemOut = fmt.Sprintf("%s=%s at line %d", res.Option, res.Value, res.Line)
			case res.Severity == Required:
				c.Failure = &junitMessage{
					Message: fmt.Sprintf("%s is required by %s but %s", res.ID, strings.Join(res.Profiles, ", "), describe(res)),
					Type:    "missing-required-option",
					Text:    failureText(r, res),
				}
				s.Failures++
			default:
				c.SystemOut = "warning: " + message(r, res)
			}
			s.Cases = append(s.Cases, c)
		}
		for _, u := range r.Unevaluated {
			s.Cases = append(s.Cases, junitCase{
				Name: u.ID, Classname: r.Config, Time: "0",
				Skipped: &junitMessage{Message: "not evaluated: " + u.Why},
			})
			s.Skipped++
		}
		s.Tests = len(s.Cases)
		doc.Tests += s.Tests
		doc.Failures += s.Failures
		doc.Skipped += s.Skipped
		doc.Suites = append(doc.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("write junit xml: %w", err)
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func failureText(r Report, res Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", res.Reason)
	fmt.Fprintf(&b, "config: %s (kernel %s)\n", r.Config, orDash(r.Version))
	if res.Line > 0 {
		fmt.Fprintf(&b, "line %d: %s\n", res.Line, describe(res))
	} else {
		fmt.Fprintf(&b, "%s\n", describe(res))
	}
	fmt.Fprintf(&b, "fix: set %s=y (or =m)", res.Options[0])
	return b.String()
}
