package imapwire

import (
	"bufio"
	"strings"
	"testing"
)

func TestFetchModifiers(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "(CHANGEDSINCE 12345)", want: &FetchModifiers{ChangedSince: 12345, HasChangedSince: true}},
		{in: "(changedsince 1 vanished)", want: &FetchModifiers{ChangedSince: 1, HasChangedSince: true, Vanished: true}},
		{in: "(VANISHED)", want: &FetchModifiers{Vanished: true}},
		{in: "()", err: "empty FETCH modifier list"},
		{in: "(CHANGEDSINCE 0)", err: "CHANGEDSINCE needs a non-zero mod-sequence"},
		{in: "(CHANGEDSINCE 1 CHANGEDSINCE 2)", err: "CHANGEDSINCE given twice"},
		{in: "(VANISHED VANISHED)", err: "VANISHED given twice"},
		{in: "(FOO)", err: `unknown FETCH modifier "FOO"`},
		{in: "(CHANGEDSINCE)", err: "expected SP, found \")\""},
	}, (*Decoder).FetchModifiers)
}

func TestSelectParams(t *testing.T) {
	set := func(rs ...SeqRange) SeqSet { return SeqSet{Ranges: rs} }
	runCases(t, []decodeCase{
		{in: "(CONDSTORE)", want: &SelectParams{CondStore: true}},
		{in: "(QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
			want: &SelectParams{QResync: &QResyncParams{UIDValidity: 67890007, ModSeq: 20050715194045000,
				KnownUIDs: set(SeqRange{41, 41}, SeqRange{43, 211}, SeqRange{214, 541})}}},
		{in: "(qresync (67890007 90060115194045000 1:29997 (5000,7500,9000,9990:9999 15000,22500,27000,29970,29973,29976,29979,29982,29985,29988,29991,29994,29997)))",
			want: &SelectParams{QResync: &QResyncParams{UIDValidity: 67890007, ModSeq: 90060115194045000,
				KnownUIDs: set(SeqRange{1, 29997}),
				KnownSeqs: set(SeqRange{5000, 5000}, SeqRange{7500, 7500}, SeqRange{9000, 9000}, SeqRange{9990, 9999}),
				KnownSeqsUIDs: set(SeqRange{15000, 15000}, SeqRange{22500, 22500}, SeqRange{27000, 27000}, SeqRange{29970, 29970},
					SeqRange{29973, 29973}, SeqRange{29976, 29976}, SeqRange{29979, 29979}, SeqRange{29982, 29982},
					SeqRange{29985, 29985}, SeqRange{29988, 29988}, SeqRange{29991, 29991}, SeqRange{29994, 29994}, SeqRange{29997, 29997})}}},
		{in: "(QRESYNC (1 2 (3 4)) CONDSTORE)", want: &SelectParams{CondStore: true, QResync: &QResyncParams{UIDValidity: 1, ModSeq: 2,
			KnownSeqs: set(SeqRange{3, 3}), KnownSeqsUIDs: set(SeqRange{4, 4})}}},
		{in: "()", err: "empty SELECT parameter list"},
		{in: "(CONDSTORE CONDSTORE)", err: "CONDSTORE given twice"},
		{in: "(FOO)", err: `unknown SELECT parameter "FOO"`},
		{in: "(QRESYNC 1 2)", err: `expected ( after QRESYNC, found "1"`},
		{in: "(QRESYNC (0 2))", err: "number must not be 0"},
		{in: "(QRESYNC (1 0))", err: "QRESYNC needs a non-zero mod-sequence"},
		{in: "(QRESYNC (1 2 3 4))", err: `expected ( to start the sequence match data, found "4"`},
		{in: "(QRESYNC (1 2 (3 4) 5))", err: `expected ) to end QRESYNC parameters, found SP`},
		{in: "(QRESYNC (1 2 (3)))", err: `expected SP, found ")"`},
	}, (*Decoder).SelectParams)
}

func TestSeqRangeNormalize(t *testing.T) {
	cases := []struct {
		r      SeqRange
		max    uint32
		lo, hi uint32
	}{
		{SeqRange{2, 4}, 10, 2, 4},
		{SeqRange{4, 2}, 10, 2, 4},
		{SeqRange{5, 0}, 10, 5, 10},
		{SeqRange{0, 5}, 10, 5, 10},
		{SeqRange{0, 0}, 10, 10, 10},
		{SeqRange{20, 0}, 10, 10, 20},
		{SeqRange{0, 0}, 0, 0, 0},
	}
	for _, tc := range cases {
		if lo, hi := tc.r.Normalize(tc.max); lo != tc.lo || hi != tc.hi {
			t.Errorf("%v.Normalize(%d) = %d, %d; want %d, %d", tc.r, tc.max, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestDecoderReset(t *testing.T) {
	d, _ := newTestDecoder("a LOGIN x")
	d.Tag()
	d.MaxLine = 100
	d.Reset(bufio.NewReader(strings.NewReader("b NOOP\r\n")))
	if err := d.DiscardLine(); err != nil {
		t.Fatal(err)
	}
	if tag, err := d.Tag(); tag != "b" || err != nil || d.MaxLine != 100 {
		t.Fatalf("after Reset: %q %v", tag, err)
	}
}

func TestStatusItems(t *testing.T) {
	runCases(t, []decodeCase{
		{in: "(MESSAGES recent UIDNEXT UIDVALIDITY UNSEEN DELETED SIZE HIGHESTMODSEQ)",
			want: []StatusItem{StatusMessages, StatusRecent, StatusUIDNext, StatusUIDValidity, StatusUnseen, StatusDeleted, StatusSize, StatusHighestModSeq}},
		{in: "()", err: "empty STATUS item list"},
		{in: "(MESSAGES FOO)", err: `unknown STATUS item "FOO"`},
		{in: "MESSAGES", err: `expected (, found "M"`},
	}, (*Decoder).StatusItems)
}

func TestEncoderReset(t *testing.T) {
	var a, b strings.Builder
	e := NewEncoder(bufio.NewWriter(&a))
	e.Atom("one").Flush()
	e.Reset(bufio.NewWriter(&b))
	e.Atom("two").Flush()
	if a.String() != "one" || b.String() != "two" {
		t.Fatalf("got %q, %q", a.String(), b.String())
	}
}

func TestMaxSearchDepth(t *testing.T) {
	d, _ := newTestDecoder(" NOT NOT ALL\r\n")
	d.MaxSearchDepth = 2
	if _, err := d.Search(); err == nil || err.(*SyntaxError).Msg != "search program nested too deeply (more than 2 levels)" {
		t.Fatalf("err = %v", err)
	}
	d, _ = newTestDecoder(" NOT ALL\r\n")
	d.MaxSearchDepth = 2
	if _, err := d.Search(); err != nil {
		t.Fatal(err)
	}
}
