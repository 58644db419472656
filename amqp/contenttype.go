package amqp

// ContentTypeHeader returns ContentTypeHeader, the header of the
// content-type property, so that typed publishers (package codec) put the
// content type where AMQP consumers such as Spring AMQP's JSON converters
// read it: the message's content_type.
func (p *Publisher) ContentTypeHeader() string { return ContentTypeHeader }
