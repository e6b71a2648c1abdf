package imapwire

import (
	"bufio"
	"strings"
)

// Reset makes the decoder read from r with fresh line state (after
// STARTTLS or COMPRESS); limits, UTF8 and Continue are kept.
func (d *Decoder) Reset(r *bufio.Reader) {
	d.r = r
	d.pending = 0
	d.endLine()
}

// Reset makes the encoder write to w (after STARTTLS or COMPRESS).
func (e *Encoder) Reset(w *bufio.Writer) { e.w = w }

// FetchModifiers reads "(" fetch-modifier *(SP fetch-modifier) ")" after
// the FETCH items and their SP (RFC 7162 §3.1.4, §3.2.6):
// "CHANGEDSINCE" SP mod-sequence-value, and "VANISHED". Names are
// case-insensitive; a repeated or unknown modifier is a *SyntaxError.
// Whether VANISHED is allowed (UID FETCH with QRESYNC enabled, together
// with CHANGEDSINCE) is the server's decision.
func (d *Decoder) FetchModifiers() (*FetchModifiers, error) {
	m := &FetchModifiers{}
	n := 0
	err := d.List(func() error {
		n++
		name, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CHANGEDSINCE":
			if m.HasChangedSince {
				return synErr("CHANGEDSINCE given twice")
			}
			if err := d.SP(); err != nil {
				return err
			}
			v, err := d.Number64()
			if err != nil {
				return err
			}
			if v == 0 {
				return synErr("CHANGEDSINCE needs a non-zero mod-sequence")
			}
			m.ChangedSince, m.HasChangedSince = v, true
		case "VANISHED":
			if m.Vanished {
				return synErr("VANISHED given twice")
			}
			m.Vanished = true
		default:
			return synErr("unknown FETCH modifier %q", name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, synErr("empty FETCH modifier list")
	}
	return m, nil
}

// SelectParams reads "(" select-param *(SP select-param) ")" after the
// mailbox name of SELECT / EXAMINE and its SP (RFC 7162 §3.1.8, §3.2.5):
// "CONDSTORE" and "QRESYNC" SP "(" uidvalidity SP mod-sequence-value
// [SP known-uids] [SP "(" known-sequence-set SP known-uid-set ")"] ")".
// Whether QRESYNC is enabled is the server's decision.
func (d *Decoder) SelectParams() (*SelectParams, error) {
	p := &SelectParams{}
	n := 0
	err := d.List(func() error {
		n++
		name, err := d.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(name) {
		case "CONDSTORE":
			if p.CondStore {
				return synErr("CONDSTORE given twice")
			}
			p.CondStore = true
		case "QRESYNC":
			if p.QResync != nil {
				return synErr("QRESYNC given twice")
			}
			if err := d.SP(); err != nil {
				return err
			}
			q, err := d.qresync()
			if err != nil {
				return err
			}
			p.QResync = q
		default:
			return synErr("unknown SELECT parameter %q", name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, synErr("empty SELECT parameter list")
	}
	return p, nil
}

func (d *Decoder) qresync() (*QResyncParams, error) {
	q := &QResyncParams{}
	if err := d.expect('(', "( after QRESYNC"); err != nil {
		return nil, err
	}
	var err error
	if q.UIDValidity, err = d.NzNumber(); err != nil {
		return nil, err
	}
	if err := d.SP(); err != nil {
		return nil, err
	}
	if q.ModSeq, err = d.Number64(); err != nil {
		return nil, err
	}
	if q.ModSeq == 0 {
		return nil, synErr("QRESYNC needs a non-zero mod-sequence")
	}
	for i := 0; ; i++ {
		c, err := d.peek()
		if err != nil {
			return nil, err
		}
		if c == ')' {
			_, err := d.readByte()
			return q, err
		}
		if i == 2 {
			return nil, synErr("expected ) to end QRESYNC parameters, found %s", describe(c))
		}
		if err := d.SP(); err != nil {
			return nil, err
		}
		if c, err = d.peek(); err != nil {
			return nil, err
		}
		if c == '(' {
			if _, err := d.readByte(); err != nil {
				return nil, err
			}
			if q.KnownSeqs, err = d.SeqSet(); err != nil {
				return nil, err
			}
			if err := d.SP(); err != nil {
				return nil, err
			}
			if q.KnownSeqsUIDs, err = d.SeqSet(); err != nil {
				return nil, err
			}
			if err := d.expect(')', ") to end the sequence match data"); err != nil {
				return nil, err
			}
			i = 1 // nothing may follow the match data
			continue
		}
		if i > 0 {
			return nil, synErr("expected ( to start the sequence match data, found %s", describe(c))
		}
		if q.KnownUIDs, err = d.SeqSet(); err != nil {
			return nil, err
		}
	}
}
