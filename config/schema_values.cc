// config/schema_values.cc — typing, range-checking and rendering of key values.
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "config/schema.h"
#include "config/strings.h"

namespace ringmail::config {
namespace {

// "reject|normalize" -> {"reject", "normalize"}; the index is the enum value.
std::vector<std::string_view> Choices(const KeySpec& key) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t bar = key.choices.find('|', start);
    out.push_back(key.choices.substr(start, bar == std::string_view::npos ? bar : bar - start));
    if (bar == std::string_view::npos) return out;
    start = bar + 1;
  }
}

bool Fail(Position pos, std::string message, Position* error_at, std::string* error) {
  *error_at = pos;
  *error = std::move(message);
  return false;
}

std::string RenderWithUnits(int64_t value, std::span<const std::pair<int64_t, const char*>> units,
                            const char* zero) {
  if (value == 0) return zero;
  for (const auto& [multiplier, suffix] : units) {
    if (value % multiplier == 0) return Cat(value / multiplier, suffix);
  }
  return Cat(value);
}

std::string RenderSize(int64_t bytes) {
  static constexpr std::pair<int64_t, const char*> kUnits[] = {
      {1LL << 40, "TB"}, {1LL << 30, "GB"}, {1LL << 20, "MB"}, {1LL << 10, "KB"}};
  return RenderWithUnits(bytes, kUnits, "0");
}

std::string RenderDuration(int64_t us) {
  static constexpr std::pair<int64_t, const char*> kUnits[] = {{86400LL * 1000000, "d"},
                                                               {3600LL * 1000000, "h"},
                                                               {60LL * 1000000, "m"},
                                                               {1000000, "s"},
                                                               {1000, "ms"},
                                                               {1, "us"}};
  return RenderWithUnits(us, kUnits, "0s");
}

std::string RenderBound(ValueType type, int64_t value) {
  if (type == ValueType::kSize) return RenderSize(value);
  if (type == ValueType::kDuration) return RenderDuration(value);
  return Cat(value);
}

const char* TypeNoun(ValueType type) {
  switch (type) {
    case ValueType::kString:
      return "a string";
    case ValueType::kInt:
      return "an integer";
    case ValueType::kSize:
      return "a size (e.g. 512KB, 20MB, 1GB)";
    case ValueType::kDuration:
      return "a duration (e.g. 250ms, 30s, 5m, 1h, 5d)";
    case ValueType::kBool:
      return "true or false";
    case ValueType::kPercentOrInt:
      return "a count or a percentage (e.g. 4 or \"75%\")";
    case ValueType::kEnum:
      return "one of its choices";
    default:
      return "a list";
  }
}

// The numeric reading of `token` for `type`, or nullopt when the token is of another kind.
std::optional<int64_t> NumberFor(ValueType type, const Token& token, bool* percent) {
  constexpr int64_t kMaxSeconds = std::numeric_limits<int64_t>::max() / 1000000;
  switch (type) {
    case ValueType::kInt:
      if (token.kind == TokenKind::kInteger) return token.number;
      return std::nullopt;
    case ValueType::kSize:
      if (token.kind == TokenKind::kInteger) return token.number;
      if (token.kind == TokenKind::kUnitNumber) return token.size_bytes;
      return std::nullopt;
    case ValueType::kDuration:
      // A bare integer is seconds (the unit of RFC 5321's timeouts and of most MTAs).
      if (token.kind == TokenKind::kInteger && token.number <= kMaxSeconds &&
          token.number >= -kMaxSeconds) {
        return token.number * 1000000;
      }
      if (token.kind == TokenKind::kUnitNumber) return token.duration_us;
      return std::nullopt;
    case ValueType::kPercentOrInt:
      if (token.kind == TokenKind::kInteger) return token.number;
      if (token.kind == TokenKind::kPercent) {
        *percent = true;
        return token.number;
      }
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

bool ConvertNumber(const KeySpec& key, const Token& raw, TypedValue* out, Position* error_at,
                   std::string* error) {
  // A quoted number ("20MB", "75%") reads as the same bare token would.
  Token token = raw.kind == TokenKind::kString ? ClassifyBare(raw.text, raw.pos) : raw;
  if (token.kind == TokenKind::kError) {
    return Fail(raw.pos, Cat(key.name, ": ", token.text), error_at, error);
  }
  bool percent = false;
  std::optional<int64_t> number = NumberFor(key.type, token, &percent);
  if (!number) {
    return Fail(raw.pos, Cat(key.name, " expects ", TypeNoun(key.type), ", got ", raw.Describe()),
                error_at, error);
  }
  int64_t min = percent ? 1 : key.min;
  int64_t max = percent ? 100 : key.max;
  if (*number < min || *number > max) {
    const char* suffix = percent ? "%" : "";
    return Fail(raw.pos,
                Cat(key.name, " = ", token.text, " is out of range (", RenderBound(key.type, min),
                    suffix, "..", RenderBound(key.type, max), suffix, ")"),
                error_at, error);
  }
  if (key.type == ValueType::kPercentOrInt) {
    using Kind = ConcurrencySpec::Kind;
    *out = ConcurrencySpec{percent ? Kind::kPercent : Kind::kCount, static_cast<int>(*number)};
  } else {
    *out = *number;
  }
  return true;
}

bool ConvertScalar(const KeySpec& key, const Token& token, TypedValue* out, Position* error_at,
                   std::string* error) {
  switch (key.type) {
    case ValueType::kString:
      // A CR or LF in a banner or host name would let the config inject SMTP replies; no
      // string key has a use for control characters.
      for (char c : token.text) {
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          return Fail(token.pos, Cat(key.name, " must not contain control characters"), error_at,
                      error);
        }
      }
      *out = token.text;
      return true;
    case ValueType::kBool: {
      std::string lower = absl::AsciiStrToLower(token.text);
      if (lower == "true" || lower == "yes" || lower == "on" || lower == "1") {
        *out = true;
        return true;
      }
      if (lower == "false" || lower == "no" || lower == "off" || lower == "0") {
        *out = false;
        return true;
      }
      return Fail(token.pos, Cat(key.name, " expects true or false, got ", token.Describe()),
                  error_at, error);
    }
    case ValueType::kEnum: {
      std::vector<std::string_view> choices = Choices(key);
      for (size_t i = 0; i < choices.size(); ++i) {
        if (absl::EqualsIgnoreCase(Av(choices[i]), token.text)) {
          *out = static_cast<int64_t>(i);
          return true;
        }
      }
      std::string listed;
      for (std::string_view choice : choices) {
        Append(&listed, listed.empty() ? "" : ", ", QuoteString(choice));
      }
      return Fail(token.pos, Cat(key.name, " must be one of ", listed, "; got ", token.Describe()),
                  error_at, error);
    }
    default:
      return ConvertNumber(key, token, out, error_at, error);
  }
}

template <typename T, typename ParseFn>
bool ConvertItems(const KeySpec& key, const std::vector<Token>& items, std::vector<T>* out,
                  ParseFn parse, Position* error_at, std::string* error) {
  for (const Token& item : items) {
    absl::StatusOr<T> parsed = parse(item.text);
    if (!parsed.ok()) {
      return Fail(item.pos, Cat(key.name, ": ", parsed.status().message()), error_at, error);
    }
    out->push_back(*std::move(parsed));
  }
  return true;
}

bool ConvertList(const KeySpec& key, const Value& value, TypedValue* out, Position* error_at,
                 std::string* error) {
  std::vector<Token> empty;
  // `default_route = ""`: a lone empty string is an empty list ("no routes").
  bool lone_empty = !value.is_list && value.items.size() == 1 && value.items[0].text.empty();
  const std::vector<Token>& items = lone_empty ? empty : value.items;
  switch (key.type) {
    case ValueType::kStringList: {
      std::vector<std::string> list;
      auto parse = [](std::string_view text) -> absl::StatusOr<std::string> {
        if (text.empty()) return absl::InvalidArgumentError("empty item in list");
        return std::string(text);
      };
      if (!ConvertItems(key, items, &list, parse, error_at, error)) return false;
      *out = std::move(list);
      return true;
    }
    case ValueType::kDomainList: {
      std::vector<std::string> list;
      if (!ConvertItems(key, items, &list, NormalizeRelayDomain, error_at, error)) return false;
      *out = std::move(list);
      return true;
    }
    case ValueType::kCidrList: {
      CidrList list;
      if (!ConvertItems(key, items, &list.blocks, Cidr::Parse, error_at, error)) return false;
      *out = std::move(list);
      return true;
    }
    case ValueType::kAddressList: {
      std::vector<NetAddress> list;
      auto parse = [](std::string_view text) { return NetAddress::Parse(text, uint16_t{53}); };
      if (!ConvertItems(key, items, &list, parse, error_at, error)) return false;
      *out = std::move(list);
      return true;
    }
    case ValueType::kRouteList: {
      std::vector<RouteHost> list;
      if (!ConvertItems(key, items, &list, RouteHost::Parse, error_at, error)) return false;
      *out = std::move(list);
      return true;
    }
    default:
      return Fail(value.pos, "internal: not a list type", error_at, error);
  }
}

bool IsListType(ValueType type) {
  switch (type) {
    case ValueType::kStringList:
    case ValueType::kDomainList:
    case ValueType::kCidrList:
    case ValueType::kAddressList:
    case ValueType::kRouteList:
      return true;
    default:
      return false;
  }
}

template <typename T, typename Fn>
std::string RenderList(const std::vector<T>& items, Fn text_of) {
  std::string out = "(";
  for (const T& item : items) Append(&out, " ", QuoteString(text_of(item)));
  Append(&out, " )");
  return out;
}

std::vector<std::optional<TypedValue>> ComputeDefaults() {
  std::vector<std::optional<TypedValue>> defaults;
  for (const KeySpec& key : AllKeys()) {
    if (!key.inherit.empty()) {
      defaults.push_back(std::nullopt);
      continue;
    }
    absl::StatusOr<Value> value = ParseValueText(key.default_text);
    RM_CHECK(value.ok()) << "schema default of " << key.name << ": " << value.status();
    TypedValue typed;
    Position error_at;
    std::string error;
    RM_CHECK(ConvertValue(key, *value, &typed, &error_at, &error))
        << "schema default of " << key.name << ": " << error;
    defaults.push_back(std::move(typed));
  }
  return defaults;
}

}  // namespace

bool ConvertValue(const KeySpec& key, const Value& value, TypedValue* out, Position* error_at,
                  std::string* error) {
  if (IsListType(key.type)) return ConvertList(key, value, out, error_at, error);
  if (value.is_list || value.items.size() != 1) {
    return Fail(value.pos, Cat(key.name, " takes a single value, not a list"), error_at, error);
  }
  return ConvertScalar(key, value.items[0], out, error_at, error);
}

std::string QuoteString(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out += c;
        break;
    }
  }
  out += '"';
  return out;
}

std::string RenderValue(const KeySpec& key, const TypedValue& value) {
  switch (key.type) {
    case ValueType::kString:
      return QuoteString(std::get<std::string>(value));
    case ValueType::kInt:
      return Cat(std::get<int64_t>(value));
    case ValueType::kSize:
      return RenderSize(std::get<int64_t>(value));
    case ValueType::kDuration:
      return RenderDuration(std::get<int64_t>(value));
    case ValueType::kBool:
      return std::get<bool>(value) ? "true" : "false";
    case ValueType::kPercentOrInt: {
      const auto& spec = std::get<ConcurrencySpec>(value);
      if (spec.kind == ConcurrencySpec::Kind::kCount) return Cat(spec.value);
      return Cat("\"", spec.value, "%\"");
    }
    case ValueType::kEnum: {
      std::vector<std::string_view> choices = Choices(key);
      int64_t index = std::get<int64_t>(value);
      bool valid = index >= 0 && index < static_cast<int64_t>(choices.size());
      return QuoteString(valid ? choices[index] : std::string_view("?"));
    }
    case ValueType::kStringList:
    case ValueType::kDomainList:
      return RenderList(std::get<std::vector<std::string>>(value),
                        [](const std::string& s) { return s; });
    case ValueType::kCidrList:
      return RenderList(std::get<CidrList>(value).blocks,
                        [](const Cidr& c) { return c.ToString(); });
    case ValueType::kAddressList:
      return RenderList(std::get<std::vector<NetAddress>>(value),
                        [](const NetAddress& a) { return a.ToString(); });
    case ValueType::kRouteList:
      return RenderList(std::get<std::vector<RouteHost>>(value),
                        [](const RouteHost& r) { return r.ToString(); });
  }
  return "?";
}

void ApplyDefaults(ScopeKind scope, void* object) {
  static const std::vector<std::optional<TypedValue>> defaults = ComputeDefaults();
  std::span<const KeySpec> keys = AllKeys();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].scope == scope && defaults[i]) keys[i].store(object, *defaults[i]);
  }
}

}  // namespace ringmail::config
