// Reports the Node it runs on (package.json engines.node asks for 20.x).
const http = require("http");
const ms = require("ms");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end(`engines app on node ${process.version}; ${ms(120000)}\n`);
}).listen(Number(process.env.PORT));
