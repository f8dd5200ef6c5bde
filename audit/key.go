package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// keyID is the first 8 bytes of SHA-256 of the public key: stored in every
// segment header so verify can say "signed by another key" instead of just
// "bad signature".
func keyID(pub ed25519.PublicKey) [8]byte {
	s := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], s[:8])
	return id
}

// KeyID is the hex form of the key id of pub.
func KeyID(pub ed25519.PublicKey) string {
	id := keyID(pub)
	return hex.EncodeToString(id[:])
}

// Fingerprint is the SHA-256 of the raw public key, in hex: what to compare
// when pinning a node's key.
func Fingerprint(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(s[:])
}

// ParsePublicKey reads a pinned public key: 64 hex digits (the raw
// ed25519 key, as the writer logs it at Open) or a key file (PEM, public
// or private).
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	if len(s) == 2*ed25519.PublicKeySize {
		if b, err := hex.DecodeString(s); err == nil {
			return ed25519.PublicKey(b), nil
		}
	}
	if _, err := os.Stat(s); err != nil {
		return nil, fmt.Errorf("public key %q: want 64 hex digits (the raw ed25519 key) or a key file: %w", s, err)
	}
	return LoadPublicKey(s)
}

// PublicKeyFile is where the public key of the private key in keyFile is
// written: the same name with the extension .pub.
func PublicKeyFile(keyFile string) string {
	return strings.TrimSuffix(keyFile, filepath.Ext(keyFile)) + ".pub"
}

// LoadOrCreateKey reads the node's private key, or creates it (mode 0600,
// exclusively, with the public key beside it) if the file does not exist.
// A key that is a symlink, is owned by another user than root (or the
// writer's own user), or that group or others can read or write is
// refused: whoever can replace the signing key can rewrite the log.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	priv, err := loadPrivate(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return priv, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create key dir: %w", err)
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	// O_EXCL|O_CREAT refuses an existing name, a symlink included.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // another writer won the race
			return loadPrivate(path)
		}
		return nil, fmt.Errorf("create key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("sync key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("close key %s: %w", path, err)
	}
	if err := WritePublicKey(PublicKeyFile(path), priv.Public().(ed25519.PublicKey)); err != nil {
		return nil, err
	}
	return priv, nil
}

// WritePublicKey writes pub as a PKIX PEM file (mode 0644). It writes a
// new file and renames it into place, so a symlink planted at path is
// replaced, never followed.
func WritePublicKey(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return fmt.Errorf("encode public key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write public key: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write public key %s: %w", path, err)
	}
	return nil
}

// loadPrivate reads the signing key, refusing a symlink, a file owned by
// another user than root or the process's own, and a mode that lets group
// or others read or write it. The checks are made on the opened file.
func loadPrivate(path string) (ed25519.PrivateKey, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("key file %s is a symlink: refused (the signing key must be a regular file owned by root, mode 0600)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("key file %s: not a regular file: refused", path)
	}
	if euid := uint32(os.Geteuid()); st.Uid != 0 && st.Uid != euid {
		return nil, fmt.Errorf("key file %s: owned by uid %d, want root (or uid %d, the writer's own): another user could replace the signing key", path, st.Uid, euid)
	}
	if perm := st.Mode & 0o777; perm&0o077 != 0 {
		return nil, fmt.Errorf("key file %s: mode %04o lets others read or write the signing key, want 0600", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	k, err := parseKey(path, data)
	if err != nil {
		return nil, err
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key file %s: holds a public key, the writer needs the private key", path)
	}
	return priv, nil
}

// LoadPublicKey reads the key verify checks signatures with: a private key
// file (its public half is used) or a public key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	k, err := readKey(path)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k.Public().(ed25519.PublicKey), nil
	case ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("key file %s: not an ed25519 key", path)
}

func readKey(path string) (any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return parseKey(path, data)
}

func parseKey(path string, data []byte) (any, error) {
	blk, _ := pem.Decode(data)
	if blk == nil {
		return nil, fmt.Errorf("key file %s: no PEM block, want an ed25519 PRIVATE KEY or PUBLIC KEY", path)
	}
	switch blk.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		if pk, ok := k.(ed25519.PrivateKey); ok {
			return pk, nil
		}
	case "PUBLIC KEY":
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		if pk, ok := k.(ed25519.PublicKey); ok {
			return pk, nil
		}
	}
	return nil, fmt.Errorf("key file %s: PEM %q is not an ed25519 key, want PRIVATE KEY or PUBLIC KEY", path, blk.Type)
}

// keyring holds the public keys a reader accepts, by key id.
type keyring map[[8]byte]ed25519.PublicKey

func (k keyring) add(pub ed25519.PublicKey) { k[keyID(pub)] = pub }

// loadKeyring reads public keys (or private key files, for their public
// half) into a keyring.
func loadKeyring(files ...string) (keyring, error) {
	k := keyring{}
	for _, f := range files {
		pub, err := LoadPublicKey(f)
		if err != nil {
			return nil, err
		}
		k.add(pub)
	}
	return k, nil
}

func (k keyring) ids() []string {
	var out []string
	for id := range k {
		out = append(out, hex.EncodeToString(id[:]))
	}
	sort.Strings(out)
	return out
}
