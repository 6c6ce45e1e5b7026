// hawkBit's DDI API as the rig's update server plays it (hawkbit_ddi.hpp):
// the target token on every request, the controller base's links, the
// deployment with its artifact's hashes, feedback and configData as
// SWUpdate 2022.12's suricatta sends them, and bad requests answered with
// the right status; and the same over HTTP through UpdateServer::set_api.
#include "otarig/drivers/net/hawkbit_ddi.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <memory>

#include "loopback.hpp"
#include "otarig/core/errors.hpp"
#include "otarig/drivers/net/http_server.hpp"

using namespace otarig::drivers::net;
using namespace otarig::test::net;

namespace {

constexpr const char* kToken = "0123456789abcdef0123456789abcdef";
const std::string kBase = "/DEFAULT/controller/v1/dev-1";
const std::string kAuth = std::string("TargetToken ") + kToken;

// The feedback body suricatta's server_send_deployment_reply() formats.
std::string feedback(int id, const char* execution, const char* finished, const char* details = "\"x\"") {
  return fmt::format(R"({{ "id": {}, "time": "20261207T120000", "status": {{ "result": {{ "progress": {{ "cnt" : 0, "of" : 1 }}, "finished": "{}" }}, "execution": "{}", "details" : [ {} ] }} }})",
                     id, finished, execution, details);
}

class HawkbitDdiTest : public testing::Test {
 protected:
  HawkbitDdiTest() : api_({"DEFAULT", "dev-1", kToken, "https://127.0.0.1:8443", "update.swu", "00:00:01"}) {}
  ApiResponse get(const std::string& target, const std::string& auth = kAuth) {
    auto r = api_.handle({"GET", target, auth, "", ""});
    EXPECT_TRUE(r) << target;
    return r.value_or(ApiResponse{});
  }
  ApiResponse send(const std::string& method, const std::string& target, const std::string& body,
                   const std::string& auth = kAuth) {
    auto r = api_.handle({method, target, auth, "", body});
    EXPECT_TRUE(r) << target;
    return r.value_or(ApiResponse{});
  }
  std::string offer(std::uint64_t delivery, const std::vector<std::uint8_t>& package) {
    return api_.offer({delivery, "otarig-1.1.0.2", "1.1.0.2", {}, "https://127.0.0.1:8443/deliveries/3/image.bin",
                       package});
  }
  HawkbitDdiApi api_;
};

}  // namespace

TEST_F(HawkbitDdiTest, EveryRequestNeedsTheProvisionedTargetToken) {
  EXPECT_EQ(get(kBase, "").status, 401u);
  EXPECT_EQ(get(kBase, "TargetToken ffff").status, 401u);
  EXPECT_EQ(get(kBase, std::string("GatewayToken ") + kToken).status, 401u);
  EXPECT_EQ(get(kBase, std::string("Bearer ") + kToken).status, 401u);
  EXPECT_EQ(send("POST", kBase + "/deploymentBase/1/feedback", feedback(1, "closed", "success"), "").status, 401u);
  EXPECT_EQ(get(kBase).status, 200u);
  const auto records = api_.records();
  ASSERT_EQ(records.size(), 6u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(records[i]["kind"], "unauthorized") << records[i].dump();
    EXPECT_EQ(records[i]["http_status"], 401) << records[i].dump();
  }
  EXPECT_EQ(records[0]["reason"], "no Authorization header");
  EXPECT_EQ(records[1]["reason"], "a target token this server did not provision");
  EXPECT_NE(records[2]["reason"].get<std::string>().find("gateway token"), std::string::npos);
  EXPECT_EQ(records[5]["kind"], "poll");
  // A server without a token refuses every device.
  HawkbitDdiApi closed({"DEFAULT", "dev-1", "", "", "update.swu", "00:00:01"});
  EXPECT_EQ(closed.handle({"GET", kBase, "TargetToken ", "", ""})->status, 401u);
}

TEST_F(HawkbitDdiTest, TheBaseLinksTheOpenDeploymentAndAsksForAttributesUntilSent) {
  auto base = nlohmann::json::parse(get(kBase).body);
  EXPECT_EQ(base["config"]["polling"]["sleep"], "00:00:01");
  EXPECT_FALSE(base["_links"].contains("deploymentBase")) << base.dump();
  EXPECT_EQ(base["_links"]["configData"]["href"], "https://127.0.0.1:8443/DEFAULT/controller/v1/dev-1/configData");
  const auto id = offer(7, {1, 2, 3});
  EXPECT_EQ(id, "7");
  base = nlohmann::json::parse(get(kBase + "?c=1").body);
  EXPECT_EQ(base["_links"]["deploymentBase"]["href"],
            "https://127.0.0.1:8443/DEFAULT/controller/v1/dev-1/deploymentBase/7");
  const auto config = R"({ "id": "", "time": "20261207T120000", "status": { "result": { "finished": "success" }, "execution": "closed", "details" : [ "" ] }, "data" : {  "board": "otarig:1.0","version": "1.0.0.1" } })";
  EXPECT_EQ(send("PUT", kBase + "/configData", config).status, 200u);
  EXPECT_EQ(api_.attributes()["version"], "1.0.0.1");
  base = nlohmann::json::parse(get(kBase).body);
  EXPECT_FALSE(base["_links"].contains("configData")) << base.dump();
  api_.withdraw();
  base = nlohmann::json::parse(get(kBase).body);
  EXPECT_FALSE(base.contains("_links")) << base.dump();
  EXPECT_FALSE(api_.open_action());
}

TEST_F(HawkbitDdiTest, TheDeploymentNamesTheArtifactWithItsSizeHashesAndLink) {
  offer(3, {'a', 'b', 'c'});
  const auto r = get(kBase + "/deploymentBase/3?c=-2129030598");
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto d = nlohmann::json::parse(r.body);
  EXPECT_EQ(d["id"], "3");
  EXPECT_EQ(d["deployment"]["update"], "forced");
  const auto& chunk = d["deployment"]["chunks"][0];
  EXPECT_EQ(chunk["version"], "1.1.0.2");
  EXPECT_EQ(chunk["name"], "otarig-1.1.0.2");
  const auto& a = chunk["artifacts"][0];
  EXPECT_EQ(a["filename"], "update.swu");
  EXPECT_EQ(a["size"], 3);
  EXPECT_EQ(a["hashes"]["sha1"], "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(a["hashes"]["md5"], "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(a["hashes"]["sha256"], "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // suricatta takes _links.download (https) before download-http.
  EXPECT_EQ(a["_links"]["download"]["href"], "https://127.0.0.1:8443/deliveries/3/image.bin");
  api_.offer({4, "n", "v", {}, "http://127.0.0.1:1/x.swu", std::vector<std::uint8_t>{}});
  const auto plain = nlohmann::json::parse(get(kBase + "/deploymentBase/4").body);
  EXPECT_EQ(plain["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"],
            "http://127.0.0.1:1/x.swu");
}

TEST_F(HawkbitDdiTest, FeedbackIsRecordedAndAClosedActionIsOver) {
  offer(5, {1});
  const auto fb = kBase + "/deploymentBase/5/feedback";
  EXPECT_EQ(send("POST", fb, feedback(5, "proceeding", "none", "\"Installing Update Chunk Artifacts.\"")).status, 200u);
  EXPECT_EQ(send("POST", fb, feedback(5, "proceeding", "none")).status, 200u);
  EXPECT_EQ(api_.final_status("5"), std::nullopt);
  EXPECT_EQ(send("POST", fb, feedback(5, "closed", "success", "\"Update Installed.\"")).status, 200u);
  EXPECT_EQ(api_.statuses("5"), (std::vector<std::string>{"proceeding", "proceeding", "success"}));
  EXPECT_EQ(api_.final_status("5").value_or(""), "success");
  // Over: no longer linked, and later feedback is gone.
  EXPECT_FALSE(nlohmann::json::parse(get(kBase).body)["_links"].contains("deploymentBase"));
  EXPECT_EQ(send("POST", fb, feedback(5, "closed", "failure")).status, 410u);
  EXPECT_EQ(api_.final_status("5").value_or(""), "success");
  const auto recs = api_.take_records();
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs.back()["kind"], "feedback");
  EXPECT_EQ(recs.back()["reason"], "the action is closed");
  EXPECT_EQ(recs[0]["details"][0], "Installing Update Chunk Artifacts.");
  EXPECT_TRUE(api_.take_records().empty());
  // A withdrawn action takes no feedback either.
  offer(6, {1});
  api_.withdraw();
  EXPECT_EQ(send("POST", kBase + "/deploymentBase/6/feedback", feedback(6, "closed", "failure")).status, 410u);
  EXPECT_TRUE(api_.statuses("6").empty());
}

TEST_F(HawkbitDdiTest, BadRequestsGetTheirStatusAndTheApiServesOn) {
  offer(2, {1});
  const auto fb = kBase + "/deploymentBase/2/feedback";
  struct Case {
    const char* method;
    std::string target;
    std::string body;
    unsigned status;
  };
  const std::vector<Case> cases{
      {"POST", fb, "{not json", 400},
      {"POST", fb, "[1,2]", 400},
      {"POST", fb, R"({"status": "closed"})", 400},
      {"POST", fb, feedback(2, "finished", "success"), 400},   // not an execution state
      {"POST", fb, feedback(2, "closed", "maybe"), 400},       // not a result
      {"POST", fb, feedback(9, "closed", "success"), 400},     // the body names another action
      {"POST", fb, std::string(1, '\0'), 400},
      {"POST", kBase + "/deploymentBase/99/feedback", feedback(99, "closed", "success"), 404},
      {"POST", kBase + "/deploymentBase/abc/feedback", feedback(2, "closed", "success"), 404},
      {"GET", kBase + "/deploymentBase/99", "", 404},
      {"GET", kBase + "/deploymentBase/2/other", "", 404},
      {"GET", "/DEFAULT/controller/v1/dev-2", "", 404},          // unknown controller
      {"GET", "/DEFAULT/controller/v2/dev-1", "", 404},
      {"GET", kBase + "/cancelAction/2", "", 404},               // the rig never cancels
      {"GET", fb, "", 405},
      {"PUT", kBase, "{}", 405},
      {"POST", kBase + "/deploymentBase/2", "{}", 405},
      {"GET", kBase + "/configData", "", 405},
      {"PUT", kBase + "/configData", "{\"data\": 3}", 400},
      {"PUT", kBase + "/configData", "", 400},
  };
  for (const auto& c : cases) {
    const auto r = send(c.method, c.target, c.body);
    EXPECT_EQ(r.status, c.status) << c.method << " " << c.target << " " << c.body;
    EXPECT_FALSE(nlohmann::json::parse(r.body, nullptr, false).is_discarded()) << r.body;
  }
  EXPECT_TRUE(api_.statuses("2").empty());
  EXPECT_EQ(api_.records().size(), cases.size());
  // The API still works.
  EXPECT_EQ(send("POST", fb, feedback(2, "closed", "failure")).status, 200u);
  EXPECT_EQ(api_.final_status("2").value_or(""), "failure");
  // Not under the tenant's prefix: not the API's.
  EXPECT_FALSE(api_.handle({"GET", "/other/controller/v1/dev-1", kAuth, "", ""}));
}

TEST(HawkbitDdiOptionsTest, NamesThatGoIntoPathsAreChecked) {
  EXPECT_THROW(HawkbitDdiApi({"a/b", "dev", "t", "", "update.swu", "00:00:01"}), otarig::InputError);
  EXPECT_THROW(HawkbitDdiApi({"DEFAULT", "..", "t", "", "update.swu", "00:00:01"}), otarig::InputError);
  EXPECT_THROW(HawkbitDdiApi({"DEFAULT", "dev", "t", "", "update.swu", "1s"}), otarig::InputError);
  EXPECT_THROW(HawkbitDdiApi({"DEFAULT", "dev", "t", "", "a b.swu", "00:00:01"}), otarig::InputError);
  EXPECT_EQ(generate_target_token().size(), 32u);
  EXPECT_NE(generate_target_token(), generate_target_token());
}

TEST(HawkbitDdiHttpTest, TheUpdateServerHandsDdiRequestsUnderTheTenantsPrefix) {
  auto api = std::make_shared<HawkbitDdiApi>(HawkbitOptions{"DEFAULT", "dev-1", kToken, "", "update.swu", "00:00:01"});
  UpdateServer server;
  server.set_api([api](const ApiRequest& r) { return api->handle(r); }, api->path_prefix());
  server.put("/deliveries/1/image.bin", {1, 2, 3});
  server.start();
  api->set_base_url(fmt::format("http://127.0.0.1:{}/", server.port()));
  api->offer({1, "otarig-1.1.0.2", "1.1.0.2", {}, fmt::format("http://127.0.0.1:{}/deliveries/1/image.bin", server.port()),
              std::vector<std::uint8_t>{1, 2, 3}});
  Socket s = Socket::connect(server.port());
  s.write_all(request("GET", kBase, "Authorization: " + kAuth + "\r\n"));
  auto r = read_response(s);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["_links"]["deploymentBase"]["href"],
            fmt::format("http://127.0.0.1:{}/DEFAULT/controller/v1/dev-1/deploymentBase/1", server.port()));
  s.write_all(request("GET", kBase));
  EXPECT_EQ(read_response(s).status, 401);
  const auto body = feedback(1, "closed", "failure");
  s.write_all(fmt::format("POST {}/deploymentBase/1/feedback HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n"
                          "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                          kBase, kAuth, body.size(), body));
  EXPECT_EQ(read_response(s).status, 200);
  EXPECT_EQ(api->final_status("1").value_or(""), "failure");
  // Malformed JSON: 400, and the connection serves on.
  s.write_all(fmt::format("POST {}/deploymentBase/1/feedback HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n"
                          "Content-Length: 5\r\n\r\n{}",
                          kBase, kAuth, "{nope"));
  EXPECT_EQ(read_response(s).status, 400);
  // Files outside the prefix are served as before; a POST there is not the API's.
  s.write_all(request("GET", "/deliveries/1/image.bin"));
  EXPECT_EQ(read_response(s).status, 200);
  s.write_all(request("POST", "/deliveries/1/image.bin"));
  EXPECT_EQ(read_response(s).status, 405);
}
