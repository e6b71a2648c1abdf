// Package password hashes and verifies passwords in Dovecot's
// "{SCHEME}data" form (https://doc.dovecot.org/main/core/config/auth/schemes.html),
// so user tables move between Dovecot and bucketmail unchanged.
//
// Hash makes ARGON2ID hashes with Dovecot's default parameters:
//
//	{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$<salt>$<hash>
//
// (m in KiB, 16-byte salt and 32-byte hash in unpadded standard base64, the
// PHC string format libsodium and Dovecot use).
//
// Verify understands, scheme names case-insensitive:
//
//	ARGON2ID, ARGON2I       PHC strings, version 19
//	BLF-CRYPT               bcrypt, $2a$ $2b$ $2y$ (and $2x$); passwords cut at 72 bytes
//	SHA512-CRYPT            $6$[rounds=N$]salt$hash (Drepper's SHA-crypt)
//	SHA256-CRYPT            $5$[rounds=N$]salt$hash
//	CRYPT                   any of the crypt strings above (and $1$), chosen by prefix
//	PLAIN, CLEAR            the password itself
//
// and the older schemes listed in schemes.go (SHA*, SSHA*, MD5 variants,
// MD5-CRYPT, PBKDF2, SCRAM-SHA-1/256), with .HEX/.B64 encodings.
//
// A stored hash without a {SCHEME} prefix is treated as CRYPT, like
// Dovecot's default_password_scheme. Every comparison of secret-derived
// bytes is constant time.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Errors from Verify and HashScheme. A wrong password is not an error:
// Verify returns false, nil.
var (
	// ErrUnknownScheme: the {SCHEME} (or crypt prefix) is not supported.
	ErrUnknownScheme = errors.New("password: unknown scheme")
	// ErrMalformed: the stored hash cannot be parsed.
	ErrMalformed = errors.New("password: malformed hash")
)

// Argon2Params are the cost parameters of an Argon2 hash.
type Argon2Params struct {
	MemoryKiB uint32 // m
	Time      uint32 // t, iterations
	Threads   uint8  // p
}

// DefaultArgon2ID is Dovecot's default for ARGON2ID (doveadm pw -s ARGON2ID).
var DefaultArgon2ID = Argon2Params{MemoryKiB: 65536, Time: 3, Threads: 1}

// Limits on parameters accepted from stored hashes, so a hostile or
// corrupt user table cannot make one login take gigabytes or minutes.
const (
	maxArgon2MemoryKiB = 1 << 20 // 1 GiB
	maxArgon2Time      = 64
	maxCryptRounds     = 10_000_000
	maxBcryptCost      = 18 // 2^18 rounds: about 20 s; real hashes use 10..14
	bcryptMaxPassword  = 72
)

// Hasher turns a password into a stored hash string.
type Hasher func(password string) (string, error)

// Hash hashes password with ARGON2ID and DefaultArgon2ID.
func Hash(password string) (string, error) {
	return HashArgon2ID(password, DefaultArgon2ID)
}

// HashArgon2ID hashes password with ARGON2ID and the given parameters.
func HashArgon2ID(password string, p Argon2Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	return fmt.Sprintf("{ARGON2ID}$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.MemoryKiB, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// HashScheme hashes password with a named scheme: ARGON2ID, BLF-CRYPT
// (cost 10), SHA512-CRYPT, SHA256-CRYPT (5000 rounds), PLAIN or CLEAR.
func HashScheme(scheme, password string) (string, error) {
	switch strings.ToUpper(scheme) {
	case "ARGON2ID":
		return Hash(password)
	case "BLF-CRYPT":
		pw := []byte(password)
		if len(pw) > bcryptMaxPassword {
			pw = pw[:bcryptMaxPassword]
		}
		h, err := bcrypt.GenerateFromPassword(pw, 10)
		if err != nil {
			return "", fmt.Errorf("password: bcrypt: %w", err)
		}
		// x/crypto writes $2a$; Dovecot writes $2y$. Same algorithm.
		return "{BLF-CRYPT}$2y$" + string(h[4:]), nil
	case "SHA512-CRYPT", "SHA256-CRYPT":
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return "", fmt.Errorf("password: salt: %w", err)
		}
		for i, c := range salt {
			salt[i] = cryptAlphabet[c&0x3f]
		}
		id := "6"
		if strings.EqualFold(scheme, "SHA256-CRYPT") {
			id = "5"
		}
		h, err := shaCrypt(password, "$"+id+"$"+string(salt))
		if err != nil {
			return "", err
		}
		return "{" + strings.ToUpper(scheme) + "}" + h, nil
	case "PLAIN", "CLEAR":
		return "{" + strings.ToUpper(scheme) + "}" + password, nil
	}
	return "", fmt.Errorf("%w: %s", ErrUnknownScheme, scheme)
}

var b64 = base64.RawStdEncoding

// Scheme returns the upper-cased {SCHEME} of a stored hash and the data
// after it; "CRYPT" when there is no prefix.
func Scheme(stored string) (scheme, data string) {
	if strings.HasPrefix(stored, "{") {
		if end := strings.IndexByte(stored, '}'); end > 0 {
			return strings.ToUpper(stored[1:end]), stored[end+1:]
		}
	}
	return "CRYPT", stored
}

// Verify reports whether password matches the stored hash. A mismatch is
// (false, nil); an unsupported or unparsable hash is an error wrapping
// ErrUnknownScheme or ErrMalformed.
func Verify(stored, password string) (bool, error) {
	scheme, data := Scheme(stored)
	switch scheme {
	case "ARGON2ID":
		return verifyArgon2("argon2id", data, password)
	case "ARGON2I":
		return verifyArgon2("argon2i", data, password)
	case "BLF-CRYPT":
		return verifyBcrypt(data, password)
	case "SHA512-CRYPT":
		if !strings.HasPrefix(data, "$6$") {
			return false, fmt.Errorf("%w: SHA512-CRYPT without $6$", ErrMalformed)
		}
		return verifyShaCrypt(data, password)
	case "SHA256-CRYPT":
		if !strings.HasPrefix(data, "$5$") {
			return false, fmt.Errorf("%w: SHA256-CRYPT without $5$", ErrMalformed)
		}
		return verifyShaCrypt(data, password)
	case "CRYPT":
		switch {
		case strings.HasPrefix(data, "$argon2id$"):
			return verifyArgon2("argon2id", data, password)
		case strings.HasPrefix(data, "$argon2i$"):
			return verifyArgon2("argon2i", data, password)
		case strings.HasPrefix(data, "$2"):
			return verifyBcrypt(data, password)
		case strings.HasPrefix(data, "$5$"), strings.HasPrefix(data, "$6$"):
			return verifyShaCrypt(data, password)
		case strings.HasPrefix(data, "$1$"):
			return subtle.ConstantTimeCompare([]byte(md5Crypt(password, data)), []byte(data)) == 1, nil
		}
		return false, fmt.Errorf("%w: crypt string %.4q...", ErrUnknownScheme, data)
	}
	if ok, handled, err := verifyOther(scheme, data, password); handled {
		return ok, err
	}
	return false, fmt.Errorf("%w: %s", ErrUnknownScheme, scheme)
}

// verifyArgon2 checks a PHC string "$argon2id$v=19$m=M,t=T,p=P$salt$hash".
func verifyArgon2(variant, data, password string) (bool, error) {
	f := strings.Split(data, "$")
	// "", variant, "v=19", "m=..,t=..,p=..", salt, hash
	if len(f) != 6 || f[0] != "" || f[1] != variant {
		return false, fmt.Errorf("%w: %s: want $%s$v=19$m=,t=,p=$salt$hash", ErrMalformed, variant, variant)
	}
	if f[2] != "v=19" {
		return false, fmt.Errorf("%w: %s version %q (only v=19)", ErrUnknownScheme, variant, f[2])
	}
	var p Argon2Params
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return false, fmt.Errorf("%w: %s parameter %q", ErrMalformed, variant, kv)
		}
		switch k {
		case "m":
			p.MemoryKiB = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return false, fmt.Errorf("%w: %s parallelism %d", ErrMalformed, variant, n)
			}
			p.Threads = uint8(n)
		default:
			return false, fmt.Errorf("%w: %s parameter %q", ErrMalformed, variant, kv)
		}
	}
	if p.Time < 1 || p.Time > maxArgon2Time || p.Threads < 1 ||
		p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxArgon2MemoryKiB {
		return false, fmt.Errorf("%w: %s parameters m=%d,t=%d,p=%d out of range", ErrMalformed, variant, p.MemoryKiB, p.Time, p.Threads)
	}
	salt, err := decodeB64(f[4])
	if err != nil || len(salt) < 8 {
		return false, fmt.Errorf("%w: %s salt", ErrMalformed, variant)
	}
	want, err := decodeB64(f[5])
	if err != nil || len(want) < 4 || len(want) > 1024 {
		return false, fmt.Errorf("%w: %s hash", ErrMalformed, variant)
	}
	var got []byte
	if variant == "argon2id" {
		got = argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	} else {
		got = argon2.Key([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// decodeB64 accepts unpadded (PHC) and padded standard base64.
func decodeB64(s string) ([]byte, error) {
	return b64.DecodeString(strings.TrimRight(s, "="))
}

func verifyBcrypt(data, password string) (bool, error) {
	if len(data) < 4 || data[0] != '$' || data[1] != '2' {
		return false, fmt.Errorf("%w: bcrypt prefix", ErrMalformed)
	}
	h := []byte(data)
	switch data[2] {
	case 'a', 'b', 'x', 'y':
		// The same algorithm for every password without 8-bit bytes
		// ($2x$ is the old buggy variant, only equal for 7-bit input).
		h[2] = 'a'
	case '$':
	default:
		return false, fmt.Errorf("%w: bcrypt version %q", ErrMalformed, data[:3])
	}
	if cost, err := bcrypt.Cost(h); err == nil && cost > maxBcryptCost {
		return false, fmt.Errorf("%w: bcrypt cost %d over limit %d", ErrMalformed, cost, maxBcryptCost)
	}
	pw := []byte(password)
	if len(pw) > bcryptMaxPassword {
		pw = pw[:bcryptMaxPassword] // what crypt_blowfish (and so Dovecot) does
	}
	err := bcrypt.CompareHashAndPassword(h, pw)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	}
	return false, fmt.Errorf("%w: bcrypt: %v", ErrMalformed, err)
}

func verifyShaCrypt(data, password string) (bool, error) {
	got, err := shaCrypt(password, data)
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(data)) == 1, nil
}

// dummy is verified for unknown users so that they take as long as a
// known user with a default hash.
var dummyHash = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$YnVja2V0bWFpbGR1bW15$" +
	"ZHVtbXlkdW1teWR1bW15ZHVtbXlkdW1teWR1bW15ZHU"

// VerifyDummy spends as long as verifying a password against a default
// ARGON2ID hash and always returns false. Call it for unknown users.
func VerifyDummy(password string) bool {
	_, _ = Verify(dummyHash, password)
	return false
}
