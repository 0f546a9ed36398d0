package node

// PeerMessagesReceived is the number of peer messages this host's
// transport has delivered, over all groups. Benchmarks read it to show
// that a host whose groups are all quiesced exchanges no messages.
func (n *Node) PeerMessagesReceived() uint64 { return n.tr.Stats().Received }
