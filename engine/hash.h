// KeyHash<K>: the 64-bit hash the engine partitions and combines keys with (XXH3 over the
// key's bytes). Deterministic across runs and processes, unlike std::hash.
// Provided for integers, floating point, std::string and std::pair of hashable types;
// a user key type specializes KeyHash. Thread safety: stateless.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

// Header-only XXH3, so hashing inlines into the hot loops that call it.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace runnel::engine {

template <typename K, typename Enable = void>
struct KeyHash;

template <typename K>
struct KeyHash<K, std::enable_if_t<std::is_arithmetic_v<K>>> {
  using is_avalanching = void;  // tells Boost's flat maps the hash is already well mixed
  size_t operator()(const K& k) const { return XXH3_64bits(&k, sizeof(K)); }
};

template <>
struct KeyHash<std::string> {
  using is_avalanching = void;
  using is_transparent = void;
  size_t operator()(std::string_view k) const { return XXH3_64bits(k.data(), k.size()); }
};

template <typename A, typename B>
struct KeyHash<std::pair<A, B>> {
  using is_avalanching = void;
  size_t operator()(const std::pair<A, B>& k) const {
    const uint64_t h = KeyHash<A>()(k.first);
    const uint64_t second = KeyHash<B>()(k.second);
    return XXH3_64bits_withSeed(&second, sizeof(second), h);
  }
};

}  // namespace runnel::engine
