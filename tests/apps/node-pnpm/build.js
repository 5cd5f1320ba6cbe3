// The build step: needs the devDependency (kleur), writes build/out.txt.
const fs = require("fs");
const kleur = require("kleur");
const how = process.argv[2] || "build";
fs.mkdirSync("build", { recursive: true });
fs.writeFileSync("build/out.txt", `built by ${how} (${typeof kleur.bold === "function"})\n`);
