package p2p

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// swarmKeyFormat is what the error messages show a user who got the file
// wrong.
const swarmKeyFormat = `"/key/swarm/psk/1.0.0/" newline "/base16/" newline 64 hex digits`

// maxSwarmKeyFile bounds how much of a swarm key file we read; a real one
// is 95 bytes.
const maxSwarmKeyFile = 1 << 10

// GenerateSwarmKey returns a new random 32-byte pre-shared key in the usual
// swarm.key text format. Every node of a private network needs the same
// file.
func GenerateSwarmKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate swarm key: %w", err)
	}
	return []byte("/key/swarm/psk/1.0.0/\n/base16/\n" + hex.EncodeToString(key) + "\n"), nil
}

// WriteSwarmKey writes a swarm key file readable by its owner only,
// refusing to overwrite an existing file.
func WriteSwarmKey(path string, key []byte) error {
	if _, err := DecodeSwarmKey(bytes.NewReader(key)); err != nil {
		return fmt.Errorf("write swarm key %s: %w", path, err)
	}
	if err := writeSecretFile(path, key); err != nil {
		return fmt.Errorf("write swarm key: %w", err)
	}
	return nil
}

// LoadSwarmKey reads a swarm key file. Like the identity key it must not be
// accessible by group or others: whoever holds it can join the network.
func LoadSwarmKey(path string) (pnet.PSK, error) {
	data, err := readSecretFile(path, maxSwarmKeyFile)
	if err != nil {
		return nil, fmt.Errorf("load swarm key: %w", err)
	}
	psk, err := DecodeSwarmKey(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("load swarm key %s: %w", path, err)
	}
	return psk, nil
}

// DecodeSwarmKey parses a swarm key (base16, base64 or bin encoding, as
// pnet.DecodeV1PSK accepts), reading at most 1 KiB.
func DecodeSwarmKey(r io.Reader) (pnet.PSK, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSwarmKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("decode swarm key: %w", err)
	}
	if len(data) > maxSwarmKeyFile {
		return nil, fmt.Errorf("decode swarm key: longer than %d bytes; want %s", maxSwarmKeyFile, swarmKeyFormat)
	}
	psk, err := pnet.DecodeV1PSK(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode swarm key: %w; want %s", err, swarmKeyFormat)
	}
	if len(psk) != 32 {
		return nil, fmt.Errorf("decode swarm key: %d bytes, want 32; want %s", len(psk), swarmKeyFormat)
	}
	return psk, nil
}
