#include "listeners/http/template.h"

#include "absl/strings/str_cat.h"
#include "base/string_view.h"

namespace ringmail::listeners::http {
namespace {

bool NameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool NameChar(char c) { return NameStart(c) || (c >= '0' && c <= '9') || c == '.' || c == '-'; }

// A reference starting at text[pos] ("{{"): its length and name, or 0 when not one.
struct Reference {
  size_t length = 0;
  std::string_view name;
  bool raw = false;  // triple braces
};

Reference ParseReference(std::string_view text, size_t pos) {
  Reference ref;
  const bool raw = text.substr(pos, 3) == "{{{";
  size_t i = pos + (raw ? 3 : 2);
  while (i < text.size() && text[i] == ' ') ++i;
  const size_t name_start = i;
  if (i >= text.size() || !NameStart(text[i])) return ref;
  while (i < text.size() && NameChar(text[i])) ++i;
  const size_t name_end = i;
  if (name_end - name_start > kTemplateNameBytesMax) return ref;
  while (i < text.size() && text[i] == ' ') ++i;
  const std::string_view close = raw ? "}}}" : "}}";
  if (text.substr(i, close.size()) != close) return ref;
  ref.length = i + close.size() - pos;
  ref.name = text.substr(name_start, name_end - name_start);
  ref.raw = raw;
  return ref;
}

const std::string* Lookup(const TemplateScope& scope, std::string_view name) {
  for (const SubstitutionValues* values : {scope.recipient, scope.global}) {
    if (values == nullptr) continue;
    auto it = values->find(ToAbsl(name));
    if (it != values->end()) return &it->second;
  }
  return nullptr;
}

}  // namespace

void AppendHtmlEscaped(std::string* out, std::string_view text) {
  for (char c : text) {
    switch (c) {
      case '&':
        out->append("&amp;");
        break;
      case '<':
        out->append("&lt;");
        break;
      case '>':
        out->append("&gt;");
        break;
      case '"':
        out->append("&quot;");
        break;
      case '\'':
        out->append("&#39;");
        break;
      default:
        out->push_back(c);
    }
  }
}

bool HasTemplateReference(std::string_view text) {
  for (size_t pos = text.find("{{"); pos != std::string_view::npos;
       pos = text.find("{{", pos + 1)) {
    if (ParseReference(text, pos).length > 0) return true;
  }
  return false;
}

absl::StatusOr<std::string> ExpandTemplate(std::string_view text, const TemplateScope& scope,
                                           TemplateEscape escape, size_t output_bytes_max) {
  std::string out;
  size_t done = 0;
  for (size_t pos = text.find("{{"); pos != std::string_view::npos;) {
    Reference ref = ParseReference(text, pos);
    if (ref.length == 0) {
      pos = text.find("{{", pos + 1);
      continue;
    }
    out.append(text.substr(done, pos - done));
    if (const std::string* value = Lookup(scope, ref.name)) {
      if (escape == TemplateEscape::kHtml && !ref.raw) {
        AppendHtmlEscaped(&out, *value);
      } else {
        out.append(*value);
      }
    }
    if (out.size() > output_bytes_max) break;
    done = pos + ref.length;
    pos = text.find("{{", done);
  }
  if (out.size() <= output_bytes_max) out.append(text.substr(done));
  if (out.size() > output_bytes_max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("substitution makes more than ", output_bytes_max, " bytes"));
  }
  return out;
}

}  // namespace ringmail::listeners::http
