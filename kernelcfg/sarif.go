package kernelcfg

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
)

// SARIFOptions adjusts WriteSARIF.
type SARIFOptions struct {
	// ToolVersion is phonefarm's version, recorded in the log.
	ToolVersion string
}

const (
	sarifSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	sarifVersion = "2.1.0"
	sarifInfoURI = "https://github.com/phonefarm/phonefarm/blob/main/docs/kernelcfg-ci.md"
)

type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool      sarifTool       `json:"tool"`
	Artifacts []sarifArtifact `json:"artifacts,omitempty"`
	Results   []sarifResult   `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string            `json:"id"`
	ShortDescription     sarifMessage      `json:"shortDescription"`
	FullDescription      sarifMessage      `json:"fullDescription"`
	DefaultConfiguration sarifRuleConfig   `json:"defaultConfiguration"`
	Help                 sarifMessage      `json:"help"`
	Properties           sarifRuleProperty `json:"properties"`
}

type sarifRuleConfig struct {
	Level string `json:"level"`
}

type sarifRuleProperty struct {
	Tags []string `json:"tags"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifArtifact struct {
	Location sarifArtifactLocation `json:"location"`
}

type sarifArtifactLocation struct {
	URI   string `json:"uri"`
	Index *int   `json:"index,omitempty"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifMessage      `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysicalLocation `json:"physicalLocation"`
}

type sarifPhysicalLocation struct {
	ArtifactLocation sarifArtifactLocation `json:"artifactLocation"`
	Region           *sarifRegion          `json:"region,omitempty"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

// WriteSARIF writes reports as a SARIF 2.1.0 log for code scanning: one
// result per missing option, located at the option's line in the config
// ("# CONFIG_X is not set"), or at the file when the config does not
// mention the option. Required options are errors, recommended ones
// warnings.
func WriteSARIF(w io.Writer, reports []Report, opts SARIFOptions) error {
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name: "phonefarm kernelcfg", Version: opts.ToolVersion, InformationURI: sarifInfoURI,
			Rules: []sarifRule{},
		}},
		Results: []sarifResult{},
	}
	ruleIndex := map[string]int{}
	for ai, r := range reports {
		uri := sarifURI(r.Config)
		run.Artifacts = append(run.Artifacts, sarifArtifact{Location: sarifArtifactLocation{URI: uri}})
		for _, res := range r.Results {
			if res.OK() {
				continue
			}
			level := sarifLevel(res.Severity)
			idx, ok := ruleIndex[res.ID]
			if !ok {
				idx = len(run.Tool.Driver.Rules)
				ruleIndex[res.ID] = idx
				run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRule{
					ID:                   res.ID,
					ShortDescription:     sarifMessage{Text: res.ID + " should be enabled"},
					FullDescription:      sarifMessage{Text: res.Reason},
					DefaultConfiguration: sarifRuleConfig{Level: level},
					Help:                 sarifMessage{Text: fmt.Sprintf("Enable %s (=y or =m) in the kernel config; phonefarm kernelcfg check --fragment FILE writes a fragment for merge_config.sh.", strings.Join(res.Options, " or "))},
					Properties:           sarifRuleProperty{Tags: append([]string{"kernel-config"}, res.Profiles...)},
				})
			} else if res.Severity == Required {
				run.Tool.Driver.Rules[idx].DefaultConfiguration.Level = level
			}
			index := ai
			loc := sarifPhysicalLocation{ArtifactLocation: sarifArtifactLocation{URI: uri, Index: &index}}
			if res.Line > 0 {
				loc.Region = &sarifRegion{StartLine: res.Line}
			}
			run.Results = append(run.Results, sarifResult{
				RuleID: res.ID, RuleIndex: idx, Level: level,
				Message:             sarifMessage{Text: message(r, res)},
				Locations:           []sarifLocation{{PhysicalLocation: loc}},
				PartialFingerprints: map[string]string{"kernelcfgOption/v1": res.ID},
			})
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(sarifLog{Schema: sarifSchema, Version: sarifVersion, Runs: []sarifRun{run}}); err != nil {
		return fmt.Errorf("write sarif: %w", err)
	}
	return nil
}

func sarifLevel(s Severity) string {
	if s == Required {
		return "error"
	}
	return "warning"
}

// sarifURI turns a config path into a URI reference: relative paths stay
// relative (code scanning resolves them against the repository root),
// absolute ones become file URIs.
func sarifURI(path string) string {
	p := filepath.ToSlash(path)
	if filepath.IsAbs(path) {
		return (&url.URL{Scheme: "file", Path: p}).String()
	}
	return (&url.URL{Path: strings.TrimPrefix(p, "./")}).String()
}
