package mime

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBadStructure is returned by DecodeStructure for bytes that are not a
// structure EncodeStructure made.
var ErrBadStructure = errors.New("mime: bad encoded structure")

// structVersion is the first byte of an encoded structure. Bump it when
// the layout changes; DecodeStructure rejects other versions, so the
// index can tell a stale row (and re-parse the blob).
const structVersion = 1

// part flag bits in the encoding.
const (
	encMultipart = 1 << iota
	encMessage
	encGlobal
)

// EncodeStructure serialises the tree below p without headers, for the
// index. DecodeStructure reverses it (Header fields are nil).
//
// Layout (version 1): a version byte, then each part depth-first as
// uvarints HeaderStart, BodyStart-HeaderStart, End-BodyStart, Lines; a
// flags byte; the Presence byte; the strings Type, Subtype, ID,
// Description, Encoding, MD5, Disposition, Location, Envelope (uvarint
// length + bytes); the parameter lists and languages (count + strings);
// the child count and children; the encapsulated message if flagged.
func EncodeStructure(p *Part) []byte {
	b := make([]byte, 0, 256)
	b = append(b, structVersion)
	return encodePart(b, p)
}

func encodePart(b []byte, p *Part) []byte {
	b = binary.AppendUvarint(b, uint64(p.HeaderStart))
	b = binary.AppendUvarint(b, uint64(p.BodyStart-p.HeaderStart))
	b = binary.AppendUvarint(b, uint64(p.End-p.BodyStart))
	b = binary.AppendUvarint(b, uint64(p.Lines))
	var fl byte
	if p.Multipart {
		fl |= encMultipart
	}
	if p.Message != nil {
		fl |= encMessage
	}
	if p.global {
		fl |= encGlobal
	}
	b = append(b, fl, byte(p.Present))
	for _, s := range [...]string{p.Type, p.Subtype, p.ID, p.Description, p.Encoding, p.MD5, p.Disposition, p.Location, p.Envelope} {
		b = appendStr(b, s)
	}
	for _, ps := range [2][]Param{p.Params, p.DispositionParams} {
		b = binary.AppendUvarint(b, uint64(len(ps)))
		for _, x := range ps {
			b = appendStr(b, x.Name)
			b = appendStr(b, x.Value)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(p.Language)))
	for _, l := range p.Language {
		b = appendStr(b, l)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Parts)))
	for _, c := range p.Parts {
		b = encodePart(b, c)
	}
	if p.Message != nil {
		b = encodePart(b, p.Message)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeStructure decodes bytes made by EncodeStructure. It returns an
// error wrapping ErrBadStructure for anything else (including another
// version); it never panics.
func DecodeStructure(b []byte) (*Part, error) {
	if len(b) == 0 || b[0] != structVersion {
		return nil, fmt.Errorf("mime: decode structure: %w (version)", ErrBadStructure)
	}
	d := decoder{b: b[1:]}
	p := d.part(0)
	if d.err != nil {
		return nil, fmt.Errorf("mime: decode structure: %w (%s)", ErrBadStructure, d.err.Error())
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("mime: decode structure: %w (trailing bytes)", ErrBadStructure)
	}
	return p, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = errors.New(msg)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int64() int64 {
	v := d.uvarint()
	if v > 1<<62 {
		d.fail("offset out of range")
		return 0
	}
	return int64(v)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("string too long")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// count reads a list length, each element taking at least min bytes.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("count too large")
		return 0
	}
	return int(n)
}

func (d *decoder) params() []Param {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	ps := make([]Param, n)
	for i := range ps {
		ps[i].Name = d.str()
		ps[i].Value = d.str()
	}
	return ps
}

func (d *decoder) part(depth int) *Part {
	if depth > MaxNesting+1 {
		d.fail("too deep")
		return nil
	}
	p := &Part{}
	p.HeaderStart = d.int64()
	p.BodyStart = p.HeaderStart + d.int64()
	p.End = p.BodyStart + d.int64()
	p.Lines = d.int64()
	if len(d.b) < 2 {
		d.fail("short")
		return nil
	}
	fl := d.b[0]
	p.Present = Presence(d.b[1])
	d.b = d.b[2:]
	p.Multipart = fl&encMultipart != 0
	p.global = fl&encGlobal != 0
	p.Type, p.Subtype = d.str(), d.str()
	p.ID, p.Description, p.Encoding, p.MD5 = d.str(), d.str(), d.str(), d.str()
	p.Disposition, p.Location, p.Envelope = d.str(), d.str(), d.str()
	p.Params = d.params()
	p.DispositionParams = d.params()
	if n := d.count(1); n > 0 {
		p.Language = make([]string, n)
		for i := range p.Language {
			p.Language[i] = d.str()
		}
	}
	if n := d.count(7); n > 0 {
		p.Parts = make([]*Part, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			p.Parts = append(p.Parts, d.part(depth+1))
		}
	}
	if fl&encMessage != 0 && d.err == nil {
		p.Message = d.part(depth + 1)
	}
	if d.err != nil {
		return nil
	}
	return p
}
