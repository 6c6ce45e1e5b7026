// Mender's device API as the rig's update server plays it (mender_api.hpp):
// the authentication request's signature and key, the token every other
// request needs, deployments, status reports and logs; and the same over
// HTTP through UpdateServer::set_api.
#include "otarig/drivers/net/mender_api.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <memory>

#include "loopback.hpp"
#include "otarig/core/openssl_ptr.hpp"
#include "otarig/drivers/net/http_server.hpp"

using namespace otarig::drivers::net;
using namespace otarig::test::net;

namespace {

std::string public_pem(const std::string& private_pem) {
  otarig::ossl::BioPtr in(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())));
  otarig::ossl::PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  otarig::ossl::BioPtr out(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(out.get(), key.get());
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// What Mender's keystore sends: SHA-256 signature of the body, base64.
std::string sign(const std::string& private_pem, const std::string& data) {
  otarig::ossl::BioPtr in(BIO_new_mem_buf(private_pem.data(), static_cast<int>(private_pem.size())));
  otarig::ossl::PkeyPtr key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
  otarig::ossl::MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get());
  std::size_t n = 0;
  EVP_DigestSign(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  std::string sig(n, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &n,
                 reinterpret_cast<const unsigned char*>(data.data()), data.size());
  sig.resize(n);
  std::string b64(4 * ((n + 2) / 3) + 1, '\0');
  const int m = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                                reinterpret_cast<const unsigned char*>(sig.data()), static_cast<int>(n));
  b64.resize(static_cast<std::size_t>(m));
  return b64;
}

// The body Mender's AuthReqData.ToBytes() makes (json.Encoder: a newline at the end).
std::string auth_body(const std::string& private_pem) {
  return nlohmann::json{{"id_data", "{\"serial\":\"dev-1\"}"}, {"tenant_token", ""}, {"pubkey", public_pem(private_pem)}}
             .dump() +
         "\n";
}

ApiRequest auth_request(const std::string& private_pem) {
  const auto body = auth_body(private_pem);
  return {"POST", "/api/devices/v1/authentication/auth_requests", "Bearer ", sign(private_pem, body), body};
}

class MenderApiTest : public testing::Test {
 protected:
  void SetUp() override {
    device_key_ = generate_device_key_pem();
    api_.accept_device_key(device_key_);
  }
  std::string authenticate() {
    auto r = api_.handle(auth_request(device_key_));
    EXPECT_TRUE(r);
    EXPECT_EQ(r->status, 200u);
    return "Bearer " + r->body;
  }
  std::string device_key_;
  MenderDeviceApi api_;
};

}  // namespace

TEST_F(MenderApiTest, TheProvisionedKeyGetsATokenAndEveryOtherRequestNeedsIt) {
  const auto token = authenticate();
  EXPECT_EQ(api_.tokens_issued(), 1u);
  const std::string next = "/api/devices/v2/deployments/device/deployments/next";
  EXPECT_EQ(api_.handle({"POST", next, "", "", "{}"})->status, 401u);
  EXPECT_EQ(api_.handle({"POST", next, "Bearer not-issued", "", "{}"})->status, 401u);
  EXPECT_EQ(api_.handle({"POST", next, token, "", "{}"})->status, 204u);  // nothing published
  const auto records = api_.records();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_EQ(records[0]["kind"], "auth");
  EXPECT_EQ(records[0]["result"], "accepted");
  EXPECT_EQ(records[1]["kind"], "unauthorized");
  EXPECT_EQ(records[2]["reason"], "a token this server did not issue");
  EXPECT_EQ(records[3]["kind"], "next");
}

TEST_F(MenderApiTest, AnotherDeviceKeyIsRefusedEvenWhenItsSignatureIsValid) {
  const auto other = generate_device_key_pem();
  auto r = api_.handle(auth_request(other));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401u);
  EXPECT_EQ(api_.tokens_issued(), 0u);
  const auto rec = api_.records().back();
  EXPECT_EQ(rec["result"], "refused");
  EXPECT_NE(rec["reason"].get<std::string>().find("unknown device key"), std::string::npos) << rec.dump();
}

TEST_F(MenderApiTest, ASignatureThatDoesNotCoverTheBodyIsRefused) {
  auto req = auth_request(device_key_);
  req.body.insert(req.body.size() - 2, " ");  // the same JSON, other bytes
  EXPECT_EQ(api_.handle(req)->status, 401u);
  req = auth_request(device_key_);
  req.signature = sign(generate_device_key_pem(), req.body);  // signed by another key
  EXPECT_EQ(api_.handle(req)->status, 401u);
  req.signature.clear();
  EXPECT_EQ(api_.handle(req)->status, 401u);
  for (const auto& r : api_.records()) EXPECT_EQ(r["result"], "refused") << r.dump();
  EXPECT_EQ(api_.tokens_issued(), 0u);
  EXPECT_FALSE(verify_mender_signature(public_pem(device_key_), "x", "!!!!").empty());
}

TEST_F(MenderApiTest, ADeploymentIsOfferedUntilTheDeviceReportsItsEnd) {
  const auto token = authenticate();
  api_.publish({"dep-1", "otarig-1.1.0.2", {"otarig-board"}, "http://127.0.0.1:1/deliveries/1/image.bin"});
  const std::string next = "/api/devices/v2/deployments/device/deployments/next";
  auto r = api_.handle({"POST", next, token, "", R"({"device_provides":{"artifact_name":"otarig-1.0.0.1"}})"});
  ASSERT_EQ(r->status, 200u);
  const auto body = nlohmann::json::parse(r->body);
  EXPECT_EQ(body["id"], "dep-1");
  EXPECT_EQ(body["artifact"]["artifact_name"], "otarig-1.1.0.2");
  EXPECT_EQ(body["artifact"]["source"]["uri"], "http://127.0.0.1:1/deliveries/1/image.bin");
  EXPECT_EQ(body["artifact"]["device_types_compatible"][0], "otarig-board");
  // v1 GET (the daemon's last fallback) gets the same.
  EXPECT_EQ(api_.handle({"GET", "/api/devices/v1/deployments/device/deployments/next?device_type=otarig-board", token,
                         "", ""})
                ->status,
            200u);
  const std::string dep = "/api/devices/v1/deployments/device/deployments/dep-1/";
  for (const char* s : {"downloading", "installing", "rebooting", "success"})
    EXPECT_EQ(api_.handle({"PUT", dep + "status", token, "", nlohmann::json{{"status", s}}.dump()})->status, 204u);
  EXPECT_EQ(api_.handle({"PUT", dep + "log", token, "", R"({"messages":[{"level":"info","message":"m"}]})"})->status,
            204u);
  EXPECT_EQ(api_.handle({"PUT", dep + "status", "", "", R"({"status":"failure"})"})->status, 401u);
  EXPECT_EQ(api_.final_status("dep-1").value_or(""), "success");
  EXPECT_EQ(api_.statuses("dep-1"), (std::vector<std::string>{"downloading", "installing", "rebooting", "success"}));
  EXPECT_EQ(api_.handle({"POST", next, token, "", "{}"})->status, 204u);  // over for this device
  EXPECT_EQ(api_.handle({"PATCH", "/api/devices/v1/inventory/device/attributes", token, "", "[]"})->status, 200u);
  EXPECT_EQ(api_.handle({"GET", "/api/devices/v1/nothing", token, "", ""})->status, 404u);
  EXPECT_FALSE(api_.handle({"GET", "/images/x.bin", token, "", ""}));
  EXPECT_EQ(api_.take_records().size(), api_.records().size());
  EXPECT_TRUE(api_.take_records().empty());
}

TEST(MenderApiHttpTest, TheUpdateServerHandsApiRequestsWithTheirBodyAndHeaders) {
  const auto key = generate_device_key_pem();
  auto api = std::make_shared<MenderDeviceApi>();
  api->accept_device_key(key);
  UpdateServer server;
  server.set_api([api](const ApiRequest& r) { return api->handle(r); });
  server.put("/data.bin", {1, 2, 3});
  server.start();
  const auto body = auth_body(key);
  Socket s = Socket::connect(server.port());
  s.write_all(fmt::format("POST /api/devices/v1/authentication/auth_requests HTTP/1.1\r\nHost: t\r\n"
                          "Content-Type: application/json\r\nAuthorization: Bearer \r\nX-MEN-Signature: {}\r\n"
                          "Content-Length: {}\r\n\r\n{}",
                          sign(key, body), body.size(), body));
  auto r = read_response(s);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto token = r.body;
  s.write_all(fmt::format("PUT /api/devices/v1/deployments/device/deployments/d/status HTTP/1.1\r\nHost: t\r\n"
                          "Authorization: Bearer {}\r\nContent-Length: 20\r\n\r\n{{\"status\":\"failure\"}}",
                          token));
  EXPECT_EQ(read_response(s).status, 204);
  EXPECT_EQ(api->final_status("d").value_or(""), "failure");
  // Files are served as before.
  s.write_all(request("GET", "/data.bin"));
  EXPECT_EQ(read_response(s).status, 200);
}
