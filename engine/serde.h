// Serde<T>: how the engine turns a value into bytes and back (shuffle files, spilled and
// checkpointed blocks), and how much memory a value holds (the block manager's budget).
//
// Provided for integers, floating point, bool, std::string, std::pair, std::tuple-free
// aggregates of these: std::vector, std::map, std::unordered_map, std::set, std::optional.
// A user type registers by specializing Serde:
//
//   template <> struct runnel::engine::Serde<MyType> {
//     static void Write(const MyType& v, std::string* out);
//     static bool Read(std::string_view* in, MyType* v);   // false on malformed input
//     static size_t MemorySize(const MyType& v);           // bytes held, including sizeof
//   };
//
// The byte format is for the engine's own short-lived files; it is not a stable on-disk format.
// Thread safety: stateless; safe from any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace runnel::engine {

template <typename T, typename Enable = void>
struct Serde;  // no definition: a missing specialization is a compile error naming the type

namespace serde_internal {

inline void WriteVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline bool ReadVarint(std::string_view* in, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift <= 63 && !in->empty(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

template <typename Container>
void WriteRange(const Container& c, std::string* out) {
  WriteVarint(c.size(), out);
  for (const auto& e : c) Serde<std::decay_t<decltype(e)>>::Write(e, out);
}

template <typename Container>
size_t RangeMemorySize(const Container& c, size_t per_node_overhead) {
  size_t total = sizeof(Container);
  for (const auto& e : c) {
    total += Serde<std::decay_t<decltype(e)>>::MemorySize(e) + per_node_overhead;
  }
  return total;
}

}  // namespace serde_internal

template <typename T>
struct Serde<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static void Write(const T& v, std::string* out) {
    out->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static bool Read(std::string_view* in, T* v) {
    if (in->size() < sizeof(T)) return false;
    std::memcpy(v, in->data(), sizeof(T));
    in->remove_prefix(sizeof(T));
    return true;
  }
  static size_t MemorySize(const T&) { return sizeof(T); }
};

template <>
struct Serde<std::string> {
  static void Write(const std::string& v, std::string* out) {
    serde_internal::WriteVarint(v.size(), out);
    out->append(v);
  }
  static bool Read(std::string_view* in, std::string* v) {
    uint64_t n = 0;
    if (!serde_internal::ReadVarint(in, &n) || in->size() < n) return false;
    v->assign(in->data(), n);
    in->remove_prefix(n);
    return true;
  }
  static size_t MemorySize(const std::string& v) {
    // Short strings live inside the object (SSO, 15 bytes in libstdc++).
    return sizeof(std::string) + (v.capacity() > 15 ? v.capacity() + 1 : 0);
  }
};

template <typename A, typename B>
struct Serde<std::pair<A, B>> {
  static void Write(const std::pair<A, B>& v, std::string* out) {
    Serde<A>::Write(v.first, out);
    Serde<B>::Write(v.second, out);
  }
  static bool Read(std::string_view* in, std::pair<A, B>* v) {
    return Serde<A>::Read(in, &v->first) && Serde<B>::Read(in, &v->second);
  }
  static size_t MemorySize(const std::pair<A, B>& v) {
    return Serde<A>::MemorySize(v.first) + Serde<B>::MemorySize(v.second);
  }
};

// The elements of a map, as they are iterated: written like std::pair<A, B>.
template <typename A, typename B>
struct Serde<std::pair<const A, B>> {
  static void Write(const std::pair<const A, B>& v, std::string* out) {
    Serde<A>::Write(v.first, out);
    Serde<B>::Write(v.second, out);
  }
  static size_t MemorySize(const std::pair<const A, B>& v) {
    return Serde<A>::MemorySize(v.first) + Serde<B>::MemorySize(v.second);
  }
};

template <typename T>
struct Serde<std::vector<T>> {
  static void Write(const std::vector<T>& v, std::string* out) {
    serde_internal::WriteRange(v, out);
  }
  static bool Read(std::string_view* in, std::vector<T>* v) {
    uint64_t n = 0;
    if (!serde_internal::ReadVarint(in, &n) || n > in->size()) return false;
    v->clear();
    v->reserve(n);
    for (uint64_t i = 0; i < n; ++i) {
      T e{};
      if (!Serde<T>::Read(in, &e)) return false;
      v->push_back(std::move(e));
    }
    return true;
  }
  static size_t MemorySize(const std::vector<T>& v) {
    size_t total = sizeof(v) + (v.capacity() - v.size()) * sizeof(T);
    for (const auto& e : v) total += Serde<T>::MemorySize(e);
    return total;
  }
};

// std::map, std::unordered_map and std::set share one encoding: a count, then the elements.
template <typename C, typename E>
struct AssociativeSerde {
  static void Write(const C& v, std::string* out) { serde_internal::WriteRange(v, out); }
  static bool Read(std::string_view* in, C* v) {
    uint64_t n = 0;
    if (!serde_internal::ReadVarint(in, &n) || n > in->size()) return false;
    v->clear();
    for (uint64_t i = 0; i < n; ++i) {
      E e{};
      if (!Serde<E>::Read(in, &e)) return false;
      v->insert(std::move(e));
    }
    return true;
  }
  static size_t MemorySize(const C& v) { return serde_internal::RangeMemorySize(v, 32); }
};

template <typename K, typename V, typename Less>
struct Serde<std::map<K, V, Less>> : AssociativeSerde<std::map<K, V, Less>, std::pair<K, V>> {};
template <typename K, typename V>
struct Serde<std::unordered_map<K, V>>
    : AssociativeSerde<std::unordered_map<K, V>, std::pair<K, V>> {};
template <typename T>
struct Serde<std::set<T>> : AssociativeSerde<std::set<T>, T> {};

template <typename T>
struct Serde<std::optional<T>> {
  static void Write(const std::optional<T>& v, std::string* out) {
    out->push_back(v.has_value() ? 1 : 0);
    if (v) Serde<T>::Write(*v, out);
  }
  static bool Read(std::string_view* in, std::optional<T>* v) {
    if (in->empty()) return false;
    const bool has = in->front() != 0;
    in->remove_prefix(1);
    if (!has) {
      v->reset();
      return true;
    }
    T e{};
    if (!Serde<T>::Read(in, &e)) return false;
    *v = std::move(e);
    return true;
  }
  static size_t MemorySize(const std::optional<T>& v) {
    return sizeof(v) + (v ? Serde<T>::MemorySize(*v) : 0);
  }
};

// Serializes a whole partition (a vector) into bytes.
template <typename T>
std::string SerializeAll(const std::vector<T>& values) {
  std::string out;
  Serde<std::vector<T>>::Write(values, &out);
  return out;
}

// Parses what SerializeAll wrote; false when the bytes are malformed or have trailing data.
template <typename T>
bool DeserializeAll(std::string_view bytes, std::vector<T>* values) {
  return Serde<std::vector<T>>::Read(&bytes, values) && bytes.empty();
}

}  // namespace runnel::engine
