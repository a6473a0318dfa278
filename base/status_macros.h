// base/status_macros.h — early return on a failed absl::Status / absl::StatusOr.
// (abseil 20220623 has no status_macros.h; these are ours.)
//
//   RM_RETURN_IF_ERROR(expr);             expr yields absl::Status
//   RM_ASSIGN_OR_RETURN(lhs, expr);       expr yields absl::StatusOr<T>; lhs may declare
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RM_STATUS_CONCAT_INNER_(a, b) a##b
#define RM_STATUS_CONCAT_(a, b) RM_STATUS_CONCAT_INNER_(a, b)

#define RM_RETURN_IF_ERROR(expr)                        \
  do {                                                  \
    ::absl::Status rm_status_ = (expr);                 \
    if (!rm_status_.ok()) return rm_status_;            \
  } while (0)

#define RM_ASSIGN_OR_RETURN(lhs, expr) \
  RM_ASSIGN_OR_RETURN_IMPL_(RM_STATUS_CONCAT_(rm_statusor_, __LINE__), lhs, expr)

#define RM_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return std::move(tmp).status();  \
  lhs = std::move(tmp).value()
