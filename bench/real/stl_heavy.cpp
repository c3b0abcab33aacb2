// Input for the g++ workload: compiled (not run) with -O1, so the compiler's
// own allocations are measured. Template-heavy on purpose: many container
// and algorithm instantiations. -DSMALL compiles almost nothing, for smoke runs.
#ifdef SMALL
int twice(int x) { return 2 * x; }
#else
#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace demo {

template <typename K, typename V>
std::vector<std::pair<K, V>> sorted_items(const std::map<K, V>& m) {
  std::vector<std::pair<K, V>> out(m.begin(), m.end());
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

std::size_t count_words(const std::vector<std::string>& words) {
  std::map<std::string, int> counts;
  for (const auto& w : words) ++counts[w];
  return sorted_items(counts).size();
}

}  // namespace demo

#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <numeric>
#include <optional>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>

namespace demo {

using Value = std::variant<int, double, std::string, std::vector<int>>;

std::string describe(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>)
          return x;
        else if constexpr (std::is_same_v<T, std::vector<int>>)
          return std::to_string(std::accumulate(x.begin(), x.end(), 0));
        else
          return std::to_string(x);
      },
      v);
}

template <int N>
struct Grid {
  std::array<std::unordered_map<std::string, std::set<int>>, N> cells;
  std::optional<int> find(const std::string& key) const {
    for (int i = 0; i < N; ++i)
      if (auto it = cells[i].find(key); it != cells[i].end() && !it->second.empty()) return *it->second.begin();
    return std::nullopt;
  }
};

template <typename... Ts>
std::string join_all(const std::tuple<Ts...>& t) {
  std::string out;
  std::apply([&](const auto&... xs) { ((out += std::to_string(xs) + ','), ...); }, t);
  return out;
}

std::vector<std::string> tokens(const std::string& text) {
  std::vector<std::string> out(1);
  for (char c : text) {
    if (c != ' ')
      out.back() += c;
    else if (!out.back().empty())
      out.emplace_back();
  }
  return out;
}

struct Shape {
  virtual ~Shape() = default;
  virtual double area() const = 0;
};
template <int Sides>
struct Polygon : Shape {
  double side = 1;
  double area() const override { return Sides * side * side / 4; }
};

double total_area() {
  std::vector<std::unique_ptr<Shape>> shapes;
  shapes.push_back(std::make_unique<Polygon<3>>());
  shapes.push_back(std::make_unique<Polygon<4>>());
  shapes.push_back(std::make_unique<Polygon<5>>());
  shapes.push_back(std::make_unique<Polygon<6>>());
  return std::accumulate(shapes.begin(), shapes.end(), 0.0, [](double s, const auto& p) { return s + p->area(); });
}

std::size_t pipeline(const std::string& text) {
  std::unordered_set<std::string> seen;
  std::deque<std::string> order;
  std::list<std::function<std::string(std::string)>> steps{
      [](std::string s) { return s + "!"; },
      [](std::string s) { std::reverse(s.begin(), s.end()); return s; },
      [](std::string s) { std::transform(s.begin(), s.end(), s.begin(), ::toupper); return s; }};
  for (auto w : tokens(text)) {
    for (auto& f : steps) w = f(w);
    if (seen.insert(w).second) order.push_back(w);
  }
  Grid<4> grid;
  grid.cells[1]["x"].insert(3);
  std::map<std::string, std::vector<Value>> table;
  table["a"] = {1, 2.5, std::string("s"), std::vector<int>{1, 2}};
  std::size_t n = 0;
  for (const auto& [k, vs] : table)
    for (const auto& v : vs) n += describe(v).size() + k.size();
  return n + order.size() + grid.find("x").value_or(0) + join_all(std::make_tuple(1, 2.0, 3L)).size() +
         static_cast<std::size_t>(total_area()) + count_words({"a", "b", "a"});
}

}  // namespace demo
#endif
