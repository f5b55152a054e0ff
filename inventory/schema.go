package inventory

import (
	"encoding/json"

	"github.com/invopop/jsonschema"
)

// Schema returns the JSON Schema of the inventory file, generated from the
// Go types, for editors that validate YAML while typing.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{
		RequiredFromJSONSchemaTags: true,
		DoNotReference:             false,
	}
	s := r.Reflect(&Farm{})
	s.ID = "https://phonefarm.dev/schemas/farm-v1alpha1.json"
	s.Title = "phonefarm inventory"
	s.Description = "A phone farm: the phones, how to reach them and what they should become."
	return json.MarshalIndent(s, "", "  ")
}
