package password

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// The older Dovecot schemes, for user tables migrated from Dovecot. New
// hashes are never made with them.
//
//	SHA (= SHA1), SHA256, SHA512      digest of the password
//	SSHA, SSHA256, SSHA512            digest of password+salt, followed by the salt
//	PLAIN-MD5 (hex), LDAP-MD5         MD5 digest
//	SMD5                              salted MD5
//	MD5-CRYPT (= MD5)                 $1$salt$hash, Poul-Henning Kamp's md5crypt
//	PBKDF2                            $1$salt$rounds$hex, PBKDF2-HMAC-SHA1
//	SCRAM-SHA-1, SCRAM-SHA-256        iter,salt,StoredKey,ServerKey (RFC 5802 §3)
//
// A ".HEX", ".B64" or ".BASE64" suffix on the scheme name chooses the
// encoding of the stored bytes (for PLAIN too: "{PLAIN.B64}..."). Without
// one, digests are base64 (PLAIN-MD5: hex); a digest that is exactly the
// hex length of the hash is read as hex, as Dovecot does.

type digestScheme struct {
	newHash func() hash.Hash
	salted  bool
	hexDef  bool // hex is the default encoding
}

var digestSchemes = map[string]digestScheme{
	"SHA":       {newHash: sha1.New},
	"SHA1":      {newHash: sha1.New},
	"SHA256":    {newHash: sha256.New},
	"SHA512":    {newHash: sha512.New},
	"SSHA":      {newHash: sha1.New, salted: true},
	"SSHA256":   {newHash: sha256.New, salted: true},
	"SSHA512":   {newHash: sha512.New, salted: true},
	"PLAIN-MD5": {newHash: md5.New, hexDef: true},
	"LDAP-MD5":  {newHash: md5.New},
	"SMD5":      {newHash: md5.New, salted: true},
}

// splitEncoding splits "SCHEME.HEX" into "SCHEME" and "HEX".
func splitEncoding(scheme string) (string, string) {
	if i := strings.LastIndexByte(scheme, '.'); i > 0 {
		switch enc := scheme[i+1:]; enc {
		case "HEX", "B64", "BASE64":
			return scheme[:i], enc
		}
	}
	return scheme, ""
}

// decodeStored decodes stored bytes by an explicit encoding or the
// scheme's default (see the comment above).
func decodeStored(data, enc string, hexDefault bool, hexLen int) ([]byte, error) {
	switch {
	case enc == "HEX", enc == "" && hexDefault:
		return hex.DecodeString(data)
	case enc == "" && hexLen > 0 && len(data) == hexLen:
		if b, err := hex.DecodeString(data); err == nil {
			return b, nil
		}
	}
	if b, err := base64.StdEncoding.DecodeString(data); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(data, "="))
}

// verifyOther handles the schemes in this file; ok reports whether the
// scheme was one of them.
func verifyOther(scheme, data, password string) (match bool, handled bool, err error) {
	base, enc := splitEncoding(scheme)
	if ds, found := digestSchemes[base]; found {
		h := ds.newHash()
		size := h.Size()
		hexLen := 0
		if !ds.salted {
			hexLen = 2 * size
		}
		raw, err := decodeStored(data, enc, ds.hexDef, hexLen)
		if err != nil || len(raw) < size || !ds.salted && len(raw) != size {
			return false, true, fmt.Errorf("%w: %s digest", ErrMalformed, base)
		}
		h.Write([]byte(password))
		h.Write(raw[size:]) // the salt, if any
		return subtle.ConstantTimeCompare(h.Sum(nil), raw[:size]) == 1, true, nil
	}
	switch base {
	case "PLAIN", "CLEAR":
		if enc == "" {
			return subtle.ConstantTimeCompare([]byte(data), []byte(password)) == 1, true, nil
		}
		raw, err := decodeStored(data, enc, false, 0)
		if err != nil {
			return false, true, fmt.Errorf("%w: %s", ErrMalformed, scheme)
		}
		return subtle.ConstantTimeCompare(raw, []byte(password)) == 1, true, nil
	case "MD5-CRYPT", "MD5":
		if !strings.HasPrefix(data, "$1$") {
			return false, true, fmt.Errorf("%w: MD5-CRYPT without $1$", ErrMalformed)
		}
		got := md5Crypt(password, data)
		return subtle.ConstantTimeCompare([]byte(got), []byte(data)) == 1, true, nil
	case "PBKDF2":
		ok, err := verifyPBKDF2(data, password)
		return ok, true, err
	case "SCRAM-SHA-1":
		ok, err := verifySCRAM(sha1.New, data, password)
		return ok, true, err
	case "SCRAM-SHA-256":
		ok, err := verifySCRAM(sha256.New, data, password)
		return ok, true, err
	}
	return false, false, nil
}

// md5Crypt computes "$1$salt$hash" for password with the salt of setting.
func md5Crypt(password, setting string) string {
	const magic = "$1$"
	salt, _, _ := strings.Cut(strings.TrimPrefix(setting, magic), "$")
	if len(salt) > 8 {
		salt = salt[:8]
	}
	pw := []byte(password)
	alt := md5.New()
	alt.Write(pw)
	alt.Write([]byte(salt))
	alt.Write(pw)
	altSum := alt.Sum(nil)

	h := md5.New()
	h.Write(pw)
	h.Write([]byte(magic))
	h.Write([]byte(salt))
	for n := len(pw); n > 0; n -= 16 {
		h.Write(altSum[:min(n, 16)])
	}
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(pw[:1])
		}
	}
	final := h.Sum(nil)
	for i := range 1000 {
		h.Reset()
		if i&1 != 0 {
			h.Write(pw)
		} else {
			h.Write(final)
		}
		if i%3 != 0 {
			h.Write([]byte(salt))
		}
		if i%7 != 0 {
			h.Write(pw)
		}
		if i&1 != 0 {
			h.Write(final)
		} else {
			h.Write(pw)
		}
		final = h.Sum(final[:0])
	}
	var out strings.Builder
	out.WriteString(magic + salt + "$")
	to64 := func(v, n int) {
		for range n {
			out.WriteByte(cryptAlphabet[v&0x3f])
			v >>= 6
		}
	}
	for _, g := range [][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		to64(int(final[g[0]])<<16|int(final[g[1]])<<8|int(final[g[2]]), 4)
	}
	to64(int(final[11]), 2)
	return out.String()
}

// verifyPBKDF2 checks Dovecot's "$1$salt$rounds$hexhash" (HMAC-SHA1; the
// salt string's bytes are the salt).
func verifyPBKDF2(data, password string) (bool, error) {
	f := strings.Split(data, "$")
	if len(f) != 5 || f[0] != "" || f[1] != "1" {
		return false, fmt.Errorf("%w: PBKDF2", ErrMalformed)
	}
	rounds, err := strconv.Atoi(f[3])
	want, herr := hex.DecodeString(f[4])
	if err != nil || herr != nil || rounds < 1 || rounds > maxCryptRounds || len(want) == 0 || len(want) > 64 {
		return false, fmt.Errorf("%w: PBKDF2", ErrMalformed)
	}
	got, err := pbkdf2.Key(sha1.New, password, []byte(f[2]), rounds, len(want))
	if err != nil {
		return false, fmt.Errorf("%w: PBKDF2: %v", ErrMalformed, err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// verifySCRAM checks "iter,salt,StoredKey,ServerKey" (base64): StoredKey
// must be H(HMAC(SaltedPassword, "Client Key")), RFC 5802 §3. The
// password is used as given (no SASLprep), as in Dovecot.
func verifySCRAM(newHash func() hash.Hash, data, password string) (bool, error) {
	f := strings.Split(data, ",")
	if len(f) != 4 {
		return false, fmt.Errorf("%w: SCRAM", ErrMalformed)
	}
	iter, err := strconv.Atoi(f[0])
	salt, serr := base64.StdEncoding.DecodeString(f[1])
	stored, kerr := base64.StdEncoding.DecodeString(f[2])
	if err != nil || serr != nil || kerr != nil || iter < 1 || iter > maxCryptRounds || len(stored) != newHash().Size() {
		return false, fmt.Errorf("%w: SCRAM", ErrMalformed)
	}
	salted, err := pbkdf2.Key(newHash, password, salt, iter, newHash().Size())
	if err != nil {
		return false, fmt.Errorf("%w: SCRAM: %v", ErrMalformed, err)
	}
	mac := hmac.New(newHash, salted)
	mac.Write([]byte("Client Key"))
	h := newHash()
	h.Write(mac.Sum(nil))
	return subtle.ConstantTimeCompare(h.Sum(nil), stored) == 1, nil
}
