// Serves body.txt at / and the value of an environment variable at /env/KEY.
const fs = require("fs");
const path = require("path");
const express = require("express");

const app = express();
app.get("/", (req, res) => res.send(fs.readFileSync(path.join(__dirname, "body.txt"), "utf8").trim()));
app.get("/env/:key", (req, res) => res.send(process.env[req.params.key] || ""));
const server = app.listen(process.env.PORT || 5000, "0.0.0.0");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
