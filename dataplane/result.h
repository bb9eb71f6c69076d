// A small std::expected stand-in (C++23 is not available with GCC 12): a value or an error
// message. Used wherever a control-side operation can fail for a reason worth reporting.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace tandem {

struct error {
  std::string message;
};

template <typename T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(error e) : v_(std::move(e)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const std::string& error_message() const { return std::get<1>(v_).message; }

 private:
  std::variant<T, error> v_;
};

// For operations with nothing to return.
struct ok_t {};
using status = result<ok_t>;
inline status ok_status() { return ok_t{}; }
inline error make_error(std::string message) { return error{std::move(message)}; }

}  // namespace tandem
