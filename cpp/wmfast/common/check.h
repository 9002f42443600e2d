// Argument checks for the core. The core throws std::invalid_argument / std::out_of_range with
// a message that names the argument, what was expected and what was received; the bindings turn
// them into ValueError / IndexError.
#ifndef WMFAST_COMMON_CHECK_H_
#define WMFAST_COMMON_CHECK_H_

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace wmfast {

// Concatenates its arguments with operator<< into one message.
template <typename... Args>
std::string StrCat(Args&&... args) {
  std::ostringstream out;
  (out << ... << std::forward<Args>(args));
  return out.str();
}

// Raised (and turned into KeyboardInterrupt by the bindings) when a long computation is asked to
// stop from outside, e.g. by Ctrl-C.
class Interrupted : public std::runtime_error {
 public:
  Interrupted() : std::runtime_error("interrupted") {}
};

}  // namespace wmfast

#define WMFAST_CHECK_ARG(cond, ...)                                 \
  do {                                                              \
    if (!(cond)) throw std::invalid_argument(::wmfast::StrCat(__VA_ARGS__)); \
  } while (false)

#endif  // WMFAST_COMMON_CHECK_H_
