#include "otarig/core/config.hpp"

#include <gtest/gtest.h>

using otarig::Config;
using otarig::InputError;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, MalformedYamlNamesFileLineAndColumn) {
  auto msg = error_of([] { Config::load_string("a: 1\nb: [1, 2\n", "prof.yaml"); });
  EXPECT_NE(msg.find("prof.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed YAML"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyNamesItsLine) {
  auto c = Config::load_string("name: x\n\ncolour: red\n", "b.yaml");
  auto msg = error_of([&] { c.only_keys({"name"}); });
  EXPECT_NE(msg.find("b.yaml:3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'colour'"), std::string::npos) << msg;
}

TEST(Config, MissingKeyNamesTheMap) {
  auto c = Config::load_string("device:\n  mode: ab\n", "b.yaml");
  auto msg = error_of([&] { c.at("device").at("kind"); });
  EXPECT_NE(msg.find("b.yaml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing required key 'kind'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("device"), std::string::npos) << msg;
}

struct TypeCase {
  const char* yaml;
  std::function<void(const Config&)> read;
  const char* fragment;
};

class ConfigTypes : public ::testing::TestWithParam<TypeCase> {};

TEST_P(ConfigTypes, WrongTypeIsAnErrorWithLine) {
  auto c = Config::load_string(std::string("x: 0\nv: ") + GetParam().yaml + "\n", "t.yaml");
  auto msg = error_of([&] { GetParam().read(c.at("v")); });
  EXPECT_NE(msg.find("t.yaml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find(GetParam().fragment), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(
    All, ConfigTypes,
    ::testing::Values(TypeCase{"abc", [](const Config& c) { c.as_int(); }, "expected an integer"},
                      TypeCase{"-3", [](const Config& c) { c.as_uint(); }, "non-negative"},
                      TypeCase{"maybe", [](const Config& c) { c.as_bool(); }, "true or false"},
                      TypeCase{"5 parsecs", [](const Config& c) { c.as_duration(); }, "unknown duration unit"},
                      TypeCase{"4 KB", [](const Config& c) { c.as_size(); }, "unknown size unit"},
                      TypeCase{"[1, 2]", [](const Config& c) { c.as_string(); }, "expected a string"},
                      TypeCase{"{a: 1}", [](const Config& c) { c.items(); }, "expected a list"}));

TEST(Config, ValuesParse) {
  auto c = Config::load_string("d: 250ms\ne: 2s\ns: 4KiB\nm: 1MiB\nh: 0x10\nl: [a, b]\n", "v.yaml");
  EXPECT_EQ(c.at("d").as_duration().count(), 250);
  EXPECT_EQ(c.at("e").as_duration().count(), 2000);
  EXPECT_EQ(c.at("s").as_size(), 4096u);
  EXPECT_EQ(c.at("m").as_size(), 1u << 20);
  EXPECT_EQ(c.at("h").as_int(), 16);
  EXPECT_EQ(c.at("l").as_string_list(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c.size_or("missing", 7), 7u);
}

}  // namespace
