package provision

// Change is what a step changes, as data: a resource on the phone and its
// value before and after. Values are versions, SHA-256 hashes of file
// contents (never the contents: some hold credentials) or label values;
// "" is absent. The TUI's preview and the Pulumi diff show them.
type Change struct {
	Resource string `json:"resource"`
	Old      string `json:"old,omitempty"`
	New      string `json:"new,omitempty"`
}

// changer is a step that can say what it changes as data.
type changer interface{ Changes() []Change }

// Changes says what s changes: its own account when it gives one, else
// its title as the resource, without values (a restart, a wait).
func Changes(s Step) []Change {
	if c, ok := s.(changer); ok {
		return c.Changes()
	}
	return []Change{{Resource: s.Title()}}
}

func (s *fileStep) Changes() []Change {
	return []Change{{Resource: "file " + s.path, Old: s.old, New: sha(s.content)}}
}

func (s *removeStep) Changes() []Change {
	return []Change{{Resource: "file " + s.path, Old: "present"}}
}

func (s *binaryStep) Changes() []Change {
	old := s.old
	if s.oldVersion != "" {
		old = s.oldVersion + " " + s.old
	}
	return []Change{{Resource: "file " + BinaryPath, Old: old, New: s.art.Version + " " + s.art.SHA256}}
}

func (s *labelStep) Changes() []Change { return s.changes }
