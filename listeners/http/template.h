// listeners/http/template.h — {{name}} substitution for templated injections. Pure.
//
// Syntax: `{{ name }}` is replaced by the value of `name` (HTML-escaped when the template is
// an HTML body), `{{{ name }}}` by the value as it is. Names are [A-Za-z_][A-Za-z0-9_.-]*,
// at most kTemplateNameBytesMax bytes, spaces around them allowed. A name with no value
// becomes the empty string. Anything else (a lone "{{", a bad name) stays literal text.
// Lookup: the recipient's substitution_data first, then the request's global one.
// The output is bounded (a short template with many references to a long value must not
// grow without limit): past `output_bytes_max` the expansion fails with kResourceExhausted.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace ringmail::listeners::http {

inline constexpr size_t kTemplateNameBytesMax = 64;

using SubstitutionValues = absl::flat_hash_map<std::string, std::string>;

enum class TemplateEscape : uint8_t { kNone, kHtml };

struct TemplateScope {
  const SubstitutionValues* recipient = nullptr;  // may be null
  const SubstitutionValues* global = nullptr;     // may be null
};

// True when `text` holds at least one well-formed reference.
bool HasTemplateReference(std::string_view text);

absl::StatusOr<std::string> ExpandTemplate(std::string_view text, const TemplateScope& scope,
                                           TemplateEscape escape, size_t output_bytes_max);

// &, <, >, ", ' as entities.
void AppendHtmlEscaped(std::string* out, std::string_view text);

}  // namespace ringmail::listeners::http
