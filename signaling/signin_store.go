package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Files of an InviteStore, in its directory.
const (
	// InviteUsesFile holds the use counts of links with a use limit (JSON).
	InviteUsesFile = "invite-uses.json"
	// InvitesRevokedFile holds the time before which every link is revoked
	// (RFC 3339, one line), written by `switchboard invite --revoke-all`.
	InvitesRevokedFile = "invites-revoked"
)

// usesFileVersion is the format of InviteUsesFile.
const usesFileVersion = 1

// useRecord is one limited link's count; Exp (Unix seconds) is when the link
// expires, after which the record is dropped at the next write.
type useRecord struct {
	Used int   `json:"used"`
	Exp  int64 `json:"exp"`
}

type usesFile struct {
	Version int                  `json:"version"`
	Invites map[string]useRecord `json:"invites"`
}

// InviteStore keeps invite links' state in a directory, so a one-use link stays
// used and a revocation stays in force across restarts. Only the server writes
// InviteUsesFile; the invite command writes InvitesRevokedFile.
type InviteStore struct {
	dir string

	// sem serializes Use: the load-modify-write of InviteUsesFile, held across
	// the file write because a use is granted only once it is on disk (a crash
	// right after must not give a one-use link a second use).
	sem    chan struct{}
	loaded bool                 // guarded by sem
	uses   map[string]useRecord // guarded by sem
}

// NewInviteStore returns the store in dir. It does no I/O: Load reads the
// file (the server calls it at start, so a damaged file stops start-up).
func NewInviteStore(dir string) *InviteStore {
	return &InviteStore{dir: dir, sem: make(chan struct{}, 1)}
}

// Load reads the use counts. A missing file or directory is an empty store; a
// damaged file is an error (starting over would hand used links new uses).
func (s *InviteStore) Load(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.sem }()
	return s.loadHeld()
}

func (s *InviteStore) loadHeld() error {
	path := filepath.Join(s.dir, InviteUsesFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.uses, s.loaded = map[string]useRecord{}, true
		return nil
	case err != nil:
		return fmt.Errorf("invite store: %w", err)
	}
	m, err := decodeUses(b)
	if err != nil {
		return fmt.Errorf("invite store: %s: %w (move it away to start counting afresh)", path, err)
	}
	s.uses, s.loaded = m, true
	return nil
}

// decodeUses parses InviteUsesFile.
func decodeUses(b []byte) (map[string]useRecord, error) {
	var f usesFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, errors.New("not a use-count file (bad JSON)")
	}
	if f.Version != usesFileVersion {
		return nil, fmt.Errorf("unknown format version %d", f.Version)
	}
	if f.Invites == nil {
		f.Invites = map[string]useRecord{}
	}
	for id, r := range f.Invites {
		if id == "" || r.Used < 0 {
			return nil, errors.New("damaged entry")
		}
	}
	return f.Invites, nil
}

// Use implements InviteState.
func (s *InviteStore) Use(ctx context.Context, id string, max int, exp time.Time) (bool, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-s.sem }()
	if !s.loaded {
		if err := s.loadHeld(); err != nil {
			return false, err
		}
	}
	r := s.uses[id]
	if r.Used >= max {
		return false, nil
	}
	next := make(map[string]useRecord, len(s.uses)+1)
	now := time.Now().Unix()
	for k, v := range s.uses {
		if v.Exp >= now { // expired links are refused anyway: forget them
			next[k] = v
		}
	}
	next[id] = useRecord{Used: r.Used + 1, Exp: exp.Unix()}
	b, err := json.Marshal(usesFile{Version: usesFileVersion, Invites: next})
	if err != nil {
		return false, err
	}
	if err := writeFileAtomic(filepath.Join(s.dir, InviteUsesFile), b, 0o600); err != nil {
		return false, fmt.Errorf("invite store: %w", err)
	}
	s.uses = next
	return true, nil
}

// RevokedBefore implements InviteState. It reads the file on every call: the
// invite command writes it while the server runs, and sign-ins are rare.
func (s *InviteStore) RevokedBefore() (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, InvitesRevokedFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return time.Time{}, nil
	case err != nil:
		return time.Time{}, fmt.Errorf("invite store: %w", err)
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, fmt.Errorf("invite store: %s: not an RFC 3339 time", filepath.Join(s.dir, InvitesRevokedFile))
	}
	return t, nil
}

// RevokeAll revokes every link issued up to now and returns the new cut-off:
// the next whole second, because tokens carry their issue time in whole seconds
// (a link issued in the same second as the revocation is revoked too; the
// invite command issues new links at the cut-off or later).
func (s *InviteStore) RevokeAll(now time.Time) (time.Time, error) {
	t := now.Truncate(time.Second).Add(time.Second).UTC()
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return time.Time{}, fmt.Errorf("invite store: %w", err)
	}
	// 0644: it holds only a time, and the server may run as another user (the
	// systemd unit's dynamic user) than the operator who revokes.
	if err := writeFileAtomic(filepath.Join(s.dir, InvitesRevokedFile), []byte(t.Format(time.RFC3339)+"\n"), 0o644); err != nil {
		return time.Time{}, fmt.Errorf("invite store: %w", err)
	}
	return t, nil
}

// writeFileAtomic replaces path with b: a temporary file in the same directory,
// synced, then renamed over path, so a crash leaves the old or the new content,
// never a torn file.
func writeFileAtomic(path string, b []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	// The rename is durable once the directory is synced.
	if d, derr := os.Open(dir); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
