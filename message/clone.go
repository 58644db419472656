package message

// Clone returns a copy of m with its own Headers map and Payload slice,
// and the Delivery metadata cleared. Use it to publish a received message
// elsewhere (a dead-letter topic, a replay).
func (m *Message) Clone() *Message {
	c := &Message{ID: m.ID, Key: m.Key, Time: m.Time}
	if m.Payload != nil {
		c.Payload = append([]byte(nil), m.Payload...)
	}
	if m.Headers != nil {
		c.Headers = make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			c.Headers[k] = v
		}
	}
	return c
}
