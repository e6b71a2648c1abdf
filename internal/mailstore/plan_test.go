package mailstore

import (
	"strings"
	"testing"
)

// TestQueryPlans: the hot queries use their indexes (no full scans of
// messages or expunged).
func TestQueryPlans(t *testing.T) {
	sqliteOnly(t, "EXPLAIN QUERY PLAN")
	e := newEnv(t)
	for _, tc := range []struct {
		query string
		want  string
	}{
		{`SELECT ` + mailboxCols + ` FROM mailboxes m LEFT JOIN messages x ON x.mailbox_id = m.id
			WHERE m.account_id = 1 GROUP BY m.id ORDER BY m.name`, "COVERING INDEX messages_counts"},
		{`SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = 1 AND modseq > 5 ORDER BY uid`, "messages_modseq"},
		{`SELECT uid FROM expunged WHERE mailbox_id = 1 AND modseq > 5 ORDER BY uid`, "SEARCH expunged"},
		{`SELECT uid, modseq, flags, keywords FROM messages WHERE mailbox_id = 1 AND uid BETWEEN 3 AND 9 ORDER BY uid`, "sqlite_autoindex_messages_1"},
	} {
		rows, err := e.db.Query(`EXPLAIN QUERY PLAN ` + tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		t.Log(p)
		if !strings.Contains(p, tc.want) || strings.Contains(p, "SCAN x") || strings.Contains(p, "SCAN messages") || strings.Contains(p, "SCAN expunged") {
			t.Errorf("plan for %.60s...: %s; want %s", tc.query, p, tc.want)
		}
	}
}
