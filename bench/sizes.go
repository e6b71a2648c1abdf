package main

import "time"

// Sizes are the knobs of one run. FullSizes is chosen so that the whole
// run over three servers stays under 15 minutes on 2 cores; SmokeSizes
// takes a few seconds per server.
type Sizes struct {
	Name string // "full" or "smoke"

	Users int // benchmark accounts bench-N@bench.test (plus one "big" account)

	LMTP1Messages int           // messages delivered with 1 sender
	LMTP8Messages int           // messages delivered with 8 senders
	LMTPMaxTime   time.Duration // each LMTP phase stops after this long

	BigMessages int // messages in the large mailbox for the full download
	Downloads   int // full-download passes (the median is reported)

	MixedWorkers  int           // concurrent IMAP connections in the mixed load
	MixedDuration time.Duration // length of the mixed load
	MixedCycles   int           // sync cycles per login before LOGOUT and a new login

	IdleConns int // logged-in connections held in IDLE for the memory measurement

	ReindexMessages int // messages delivered to one account before its reindex (S3 mode)

	Settle time.Duration // pause after sync(2) before each server starts
}

// FullSizes is the default run (three rounds over three servers: about
// 11 minutes on this 2-core machine).
var FullSizes = Sizes{
	Name:          "full",
	Users:         64,
	LMTP1Messages: 1000,
	LMTP8Messages: 3000,
	LMTPMaxTime:   60 * time.Second,
	BigMessages:   2300, // the whole real corpus (about 2,260 messages, 27 MB)
	Downloads:     3,
	MixedWorkers:  16,
	MixedDuration: 30 * time.Second,
	MixedCycles:   10,
	IdleConns:     2000,

	ReindexMessages: 10000,

	Settle: 3 * time.Second,
}

// SmokeSizes is the CI run: every workload runs, nothing is measured.
var SmokeSizes = Sizes{
	Name:          "smoke",
	Users:         4,
	LMTP1Messages: 10,
	LMTP8Messages: 24,
	LMTPMaxTime:   20 * time.Second,
	BigMessages:   30,
	Downloads:     1,
	MixedWorkers:  2,
	MixedDuration: 2 * time.Second,
	MixedCycles:   3,
	IdleConns:     20,

	ReindexMessages: 40,
}
