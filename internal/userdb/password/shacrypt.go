package password

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// cryptAlphabet is the crypt(3) base-64 alphabet.
const cryptAlphabet = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxSalt       = 16
)

// shaCrypt computes the SHA-crypt string for password with the settings
// ("$5$" or "$6$", optional "rounds=N$", salt) taken from setting, as in
// Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
// (https://www.akkadia.org/drepper/SHA-crypt.txt). The result has the
// form "$6$[rounds=N$]salt$hash".
func shaCrypt(password, setting string) (string, error) {
	var newHash func() hash.Hash
	var perm [][3]int
	var id string
	switch {
	case strings.HasPrefix(setting, "$5$"):
		newHash, perm, id = sha256.New, sha256Perm, "$5$"
	case strings.HasPrefix(setting, "$6$"):
		newHash, perm, id = sha512.New, sha512Perm, "$6$"
	default:
		return "", fmt.Errorf("%w: SHA-crypt prefix", ErrMalformed)
	}
	rest := setting[3:]
	rounds, custom := shaCryptDefaultRounds, false
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		nstr, after, found := strings.Cut(r, "$")
		n, err := strconv.ParseUint(nstr, 10, 64)
		if !found || err != nil {
			return "", fmt.Errorf("%w: SHA-crypt rounds", ErrMalformed)
		}
		if n > maxCryptRounds {
			return "", fmt.Errorf("%w: SHA-crypt rounds %d over limit %d", ErrMalformed, n, maxCryptRounds)
		}
		rounds, custom, rest = max(int(n), shaCryptMinRounds), true, after
	}
	salt, _, _ := strings.Cut(rest, "$")
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	pw, s := []byte(password), []byte(salt)

	// Digest B = H(P S P).
	h := newHash()
	h.Write(pw)
	h.Write(s)
	h.Write(pw)
	b := h.Sum(nil)
	size := len(b)

	// Digest A = H(P S, len(P) bytes of B, then per bit of len(P): B or P).
	h.Reset()
	h.Write(pw)
	h.Write(s)
	h.Write(repeatTo(b, len(pw)))
	for n := len(pw); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(pw)
		}
	}
	a := h.Sum(nil)

	// P sequence: H(P repeated len(P) times), cut to len(P).
	h.Reset()
	for range len(pw) {
		h.Write(pw)
	}
	pseq := repeatTo(h.Sum(nil), len(pw))

	// S sequence: H(S repeated 16+A[0] times), cut to len(S).
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(s)
	}
	sseq := repeatTo(h.Sum(nil), len(s))

	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(pseq)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sseq)
		}
		if i%7 != 0 {
			h.Write(pseq)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pseq)
		}
		c = h.Sum(c[:0])
	}

	var out strings.Builder
	out.WriteString(id)
	if custom {
		fmt.Fprintf(&out, "rounds=%d$", rounds)
	}
	out.WriteString(salt)
	out.WriteByte('$')
	for i, g := range perm {
		n := 4
		if i == len(perm)-1 {
			n = size - 3*(len(perm)-1) + 1 // 2 chars for 1 byte, 3 for 2
		}
		w := 0
		for _, idx := range g {
			w <<= 8
			if idx >= 0 {
				w |= int(c[idx])
			}
		}
		for range n {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	return out.String(), nil
}

// repeatTo returns n bytes made of d repeated.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		out = append(out, d[:min(len(d), n-len(out))]...)
	}
	return out
}

// Output byte order: each group is (B2, B1, B0) of one 24-bit word, -1
// for a zero byte. From the specification's final encoding step.
var sha256Perm = [][3]int{
	{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
	{15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
	{-1, 31, 30},
}

var sha512Perm = [][3]int{
	{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4},
	{47, 5, 26}, {6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51},
	{31, 52, 10}, {53, 11, 32}, {12, 33, 54}, {34, 55, 13}, {56, 14, 35},
	{15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
	{62, 20, 41}, {-1, -1, 63},
}
