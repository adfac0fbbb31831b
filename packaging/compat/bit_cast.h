// Force-included into the native addons' C++ when they are built against an older libstdc++ than the
// compiler's (packaging/addons.sh): socketcan's signals.cc uses std::bit_cast, which libstdc++ gained in
// GCC 11 while Debian 11's is GCC 10's. The compiler's builtin does the work, as GCC 11's own <bit> does.
#if defined(__cplusplus) && __cplusplus > 201703L
#include <bit>
#if !defined(__cpp_lib_bit_cast)
namespace std {
template <typename To, typename From>
constexpr To bit_cast(const From &from) noexcept {
  return __builtin_bit_cast(To, from);
}
} // namespace std
#endif
#endif
