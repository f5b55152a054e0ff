package provision

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	tsapi "tailscale.com/client/tailscale/v2"
)

// minter makes one single-use, pre-authorised key per phone.
type minter interface {
	mint(ctx context.Context, phone string) ([]byte, error)
}

// tailscaleAPI mints keys through Tailscale's API with an API access token
// (tskey-api-...) or an OAuth client secret (tskey-client-..., which can
// only mint tagged keys).
type tailscaleAPI struct {
	client *tsapi.Client
	tags   []string
}

// DefaultTailscaleAPI is Tailscale's API.
const DefaultTailscaleAPI = "https://api.tailscale.com"

func newTailscaleAPI(secret, base string, tags []string) (*tailscaleAPI, error) {
	u, err := url.Parse(or(base, DefaultTailscaleAPI))
	if err != nil {
		return nil, fmt.Errorf("tailscale API URL: %w", err)
	}
	// The tailnet is the one the credentials belong to.
	c := &tsapi.Client{BaseURL: u, UserAgent: "phonefarm"}
	if rest, ok := strings.CutPrefix(secret, "tskey-client-"); ok {
		if len(tags) == 0 {
			return nil, errors.New("tailscale.apiKey is an OAuth client secret, which mints only tagged keys: set tailscale.tags (tags the client owns)")
		}
		id, _, _ := strings.Cut(rest, "-")
		c.Auth = &tsapi.OAuth{ClientID: id, ClientSecret: secret, Scopes: []string{"auth_keys"}}
	} else {
		c.APIKey = secret
	}
	return &tailscaleAPI{client: c, tags: tags}, nil
}

func (a *tailscaleAPI) mint(ctx context.Context, phone string) ([]byte, error) {
	var req tsapi.CreateKeyRequest
	req.Capabilities.Devices.Create.Preauthorized = true
	req.Capabilities.Devices.Create.Tags = a.tags
	req.ExpirySeconds = 3600
	// Tailscale allows 50 characters: letters, digits, spaces, dashes.
	desc := "phonefarm " + strings.Map(func(r rune) rune {
		if r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, phone)
	if len(desc) > 50 {
		desc = desc[:50]
	}
	req.Description = desc
	k, err := a.client.Keys().CreateAuthKey(ctx, req)
	if err != nil {
		var apiErr tsapi.APIError
		if errors.As(err, &apiErr) && (apiErr.Status == http.StatusUnauthorized || apiErr.Status == http.StatusForbidden) {
			return nil, fmt.Errorf("mint a tailscale key for %s: Tailscale's API refused tailscale.apiKey (%s): is it valid, unexpired and allowed to create auth keys?", phone, apiErr.Message)
		}
		var tokErr *oauth2.RetrieveError
		if errors.As(err, &tokErr) {
			return nil, fmt.Errorf("mint a tailscale key for %s: Tailscale's API refused the OAuth client secret in tailscale.apiKey (%s %s): is it valid and does it have the auth_keys scope?", phone, tokErr.Response.Status, or(tokErr.ErrorCode, "no reason given"))
		}
		return nil, fmt.Errorf("mint a tailscale key for %s: %w", phone, err)
	}
	if k.Key == "" {
		return nil, fmt.Errorf("mint a tailscale key for %s: Tailscale's API returned no key", phone)
	}
	return []byte(k.Key), nil
}
