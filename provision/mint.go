package provision

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// headscale mints pre-authorised keys through a headscale control
// server's REST API (/api/v1/user, /api/v1/preauthkey) with an API key.
type headscale struct {
	base   string // the login server URL
	apiKey string
	name   string // the headscale user owning the keys
	tags   []string
	http   *http.Client

	// Phones mint in parallel: the user is looked up (or created) once.
	mu     sync.Mutex
	userID string
}

// mint returns a new single-use key for one phone. The key is only ever
// returned, never logged or put into an error.
func (h *headscale) mint(ctx context.Context, phone string) ([]byte, error) {
	id, err := h.user(ctx)
	if err != nil {
		return nil, fmt.Errorf("mint a tailscale key for %s: %w", phone, err)
	}
	var resp struct {
		PreAuthKey struct {
			Key string `json:"key"`
		} `json:"preAuthKey"`
	}
	req := map[string]any{
		"user": id, "reusable": false, "ephemeral": false,
		"expiration": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	}
	if len(h.tags) > 0 {
		req["aclTags"] = h.tags
	}
	if err := h.call(ctx, http.MethodPost, "/api/v1/preauthkey", req, &resp); err != nil {
		return nil, fmt.Errorf("mint a tailscale key for %s: %w", phone, err)
	}
	if resp.PreAuthKey.Key == "" {
		return nil, fmt.Errorf("mint a tailscale key for %s: headscale returned no key", phone)
	}
	return []byte(resp.PreAuthKey.Key), nil
}

// user finds the user that owns phonefarm's keys, creating it if needed,
// once for all phones.
func (h *headscale) user(ctx context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.userID != "" {
		return h.userID, nil
	}
	id, err := h.findOrCreateUser(ctx)
	if err == nil {
		h.userID = id
	}
	return id, err
}

func (h *headscale) findOrCreateUser(ctx context.Context) (string, error) {
	var list struct {
		Users []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"users"`
	}
	if err := h.call(ctx, http.MethodGet, "/api/v1/user?name="+url.QueryEscape(h.name), nil, &list); err != nil {
		return "", err
	}
	for _, u := range list.Users {
		if u.Name == h.name {
			return u.ID, nil
		}
	}
	var created struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
	}
	if err := h.call(ctx, http.MethodPost, "/api/v1/user", map[string]string{"name": h.name}, &created); err != nil {
		return "", fmt.Errorf("create headscale user %q: %w", h.name, err)
	}
	return created.User.ID, nil
}

func (h *headscale) call(ctx context.Context, method, path string, body, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(h.base, "/")+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.apiKey)
	req.Header.Set("Content-Type", "application/json")
	client := h.http
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("headscale %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		if resp.StatusCode == http.StatusUnauthorized {
			msg = "the API key was refused (check tailscale.apiKey)"
		}
		return fmt.Errorf("headscale %s %s: %s: %s", method, strings.SplitN(path, "?", 2)[0], resp.Status, msg)
	}
	return json.Unmarshal(b, out)
}
