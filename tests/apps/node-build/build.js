// The build step: needs the devDependency (is-number), writes build/out.txt.
const fs = require("fs");
const isNumber = require("is-number");
const how = process.argv[2] || "build";
fs.mkdirSync("build", { recursive: true });
fs.writeFileSync("build/out.txt", `built by ${how} (${isNumber(42)})\n`);
