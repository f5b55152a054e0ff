package tui

import "github.com/charmbracelet/bubbles/key"

// keyMap is every key the wizard answers, with its help.
type keyMap struct {
	Up, Down, Use, Role, Rename, Add, Scan, Next, Back, Toggle, Edit, Quit, Stop key.Binding
	PageUp, PageDown                                                             key.Binding
	Accept, Cancel                                                               key.Binding
}

func defaultKeys() keyMap {
	return keyMap{
		Up:       key.NewBinding(key.WithKeys("up", "k"), key.WithHelp("↑/k", "up")),
		Down:     key.NewBinding(key.WithKeys("down", "j"), key.WithHelp("↓/j", "down")),
		Use:      key.NewBinding(key.WithKeys(" "), key.WithHelp("space", "use")),
		Role:     key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "role")),
		Rename:   key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "rename")),
		Add:      key.NewBinding(key.WithKeys("a"), key.WithHelp("a", "add SSH host")),
		Scan:     key.NewBinding(key.WithKeys("s"), key.WithHelp("s", "scan again")),
		Next:     key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "next")),
		Back:     key.NewBinding(key.WithKeys("b", "esc"), key.WithHelp("b", "back")),
		Toggle:   key.NewBinding(key.WithKeys(" "), key.WithHelp("space", "skip check")),
		Edit:     key.NewBinding(key.WithKeys("e"), key.WithHelp("e", "farm name")),
		Quit:     key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Stop:     key.NewBinding(key.WithKeys("ctrl+c"), key.WithHelp("ctrl+c", "stop")),
		PageUp:   key.NewBinding(key.WithKeys("pgup"), key.WithHelp("pgup", "scroll")),
		PageDown: key.NewBinding(key.WithKeys("pgdown"), key.WithHelp("pgdn", "scroll")),
		Accept:   key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "ok")),
		Cancel:   key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "cancel")),
	}
}

// helpKeys is the help line of a screen.
type helpKeys []key.Binding

func (h helpKeys) ShortHelp() []key.Binding  { return h }
func (h helpKeys) FullHelp() [][]key.Binding { return [][]key.Binding{h} }
