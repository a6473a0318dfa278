// listeners/esmtp/trace_fields.h — counts the Received: fields in a message's header
// section, for mail-loop detection (RFC 5321 §6.3: a server SHOULD count them and refuse a
// message that carries too many, with a threshold of at least 100).
//
// The header section is everything before the first empty line; a field is a line that
// starts with "Received:" in any case (continuation lines start with white space and are
// not counted). Lines end at LF (the body holds CRLF; a bare LF ends a line too). The scan
// walks the body's chunks in place, across chunk boundaries, and stops at the end of the
// header section or once `stop_at` fields are seen: it reads at most the header section.
#pragma once

#include <cstddef>

#include "core/message.h"

namespace ringmail::listeners::esmtp {

size_t CountTraceFields(const core::Body& body, size_t stop_at);

}  // namespace ringmail::listeners::esmtp
