package imapwire

import "errors"

var errNotImplemented = errors.New("imapwire: not implemented")

// Search reads the arguments of SEARCH after the command name (the SP that
// follows it included), through the end of line exclusive.
func (d *Decoder) Search() (*SearchCommand, error) { return nil, errNotImplemented }

// FetchItems reads a fetch-att list, a single fetch-att, or a macro.
func (d *Decoder) FetchItems() ([]FetchItem, error) { return nil, errNotImplemented }

// Store reads the arguments of STORE after the sequence set and its SP.
func (d *Decoder) Store() (*StoreCommand, error) { return nil, errNotImplemented }
