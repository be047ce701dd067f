// Staff: an enrolment import followed to the end (upload, queued, processed) with its row errors in a table;
// the term's windows on a calendar, the submission status, the accounts and the substitute certifiers.
import {join} from 'node:path';
import {scenario, signIn, shot, step, check, FIXTURE} from './lib.mjs';

const {files, password, import_rows: importRows, import_errors: importErrors} = FIXTURE;

await scenario('staff_import', async ({open}) => {
  const page = await open();
  await signIn(page, {school: '999001', username: 'admin', password});
  await page.getByRole('heading', {name: '資料匯入'}).waitFor();

  await page.evaluate(() => {
    window.statesSeen = [];
    new MutationObserver(() => window.statesSeen.push(document.querySelector('#import-state').textContent))
      .observe(document.querySelector('#import-state'), {childList: true, characterData: true, subtree: true});
  });
  await page.getByLabel('匯入項目').selectOption('enrolments');
  await page.getByLabel('檔案', {exact: true}).setInputFiles(join(files, '修課名單.csv'));
  const started = page.waitForResponse(r => r.url().includes('/imports/enrolments') && r.request().method() === 'POST');
  await page.getByRole('button', {name: '開始匯入'}).click();
  check((await started).status() === 202, 'the import runs as a background job');
  await page.locator('#import-state').getByText('完成').waitFor();
  const bar = await page.locator('#import-progress').evaluate(el => ({value: el.value, max: el.max}));
  check(bar.value === bar.max, `the progress bar is full (${bar.value}/${bar.max})`);
  const seen = await page.evaluate(() => window.statesSeen);
  check(seen.some(text => /^檔案上傳中 \d+%$/.test(text)), `the upload's progress was shown (saw ${seen.join(' | ')})`);
  check(seen.includes('排隊中…') || seen.some(text => text.startsWith('處理中')), `the job was followed (saw ${seen.join(' | ')})`);
  step('import finished with progress');

  const summary = page.locator('#import-report ul.summary');
  await summary.locator('li.rows strong').getByText(String(importRows), {exact: true}).waitFor();
  await summary.locator('li.rejected strong').getByText(String(importErrors), {exact: true}).waitFor();
  const errorRows = page.locator('#import-report tbody tr');
  check(await errorRows.count() === importErrors, `one table row per error (saw ${await errorRows.count()})`);
  await errorRows.filter({hasText: '本校查無學號 9900000'}).first().waitFor();
  check(await errorRows.first().locator('td').first().innerText() === '3', 'rows are numbered as in the file (header = 1)');
  await shot(page, 'staff-01-import');
  step('row errors in a table');

  await page.getByRole('link', {name: '期程'}).click();
  await page.getByRole('heading', {name: '學期期程'}).waitFor();
  await page.locator('.calendar table.month').first().waitFor();
  check(await page.locator('.calendar table.month').count() >= 6, 'the term spans months of calendar');
  check(await page.locator('input[type="datetime-local"]').count() === 16, 'eight windows with start and end');
  await shot(page, 'staff-02-windows');
  step('windows on a calendar');

  await page.getByRole('link', {name: '上傳與提交狀況'}).click();
  await page.getByRole('heading', {name: '上傳與提交狀況'}).waitFor();
  await page.locator('#statistics-summary li.students strong').waitFor();
  const students = Number(await page.locator('#statistics-summary li.students strong').innerText());
  check(students >= 6, `the school's students are counted (${students})`);
  await page.getByRole('cell', {name: '101', exact: true}).first().waitFor();
  check(await page.getByRole('table', {name: '課程學習成果（本學期）'}).locator('tbody tr').count() === 4, 'a bar per outcome status');
  const downloading = page.waitForEvent('download');
  await page.getByRole('button', {name: '下載統計表（CSV）'}).click();
  const download = await downloading;
  check(download.suggestedFilename() === 'statistics-999001-11201.csv', `the CSV is named (${download.suggestedFilename()})`);
  const csv = await (await import('node:fs/promises')).readFile(await download.path(), 'utf-8');
  check(csv.includes('學生數'), 'the CSV holds the statistics');
  await shot(page, 'staff-03-status');
  step('status');

  await page.getByRole('link', {name: '帳號'}).click();
  await page.getByRole('heading', {name: '帳號'}).waitFor();
  await page.getByLabel('帳號或姓名').fill('cert0');
  await page.getByRole('button', {name: '搜尋'}).click();
  await page.getByText('第 1–4 筆，共 4 筆').waitFor();
  await shot(page, 'staff-04-users');
  step('users');

  await page.getByRole('link', {name: '代理人設定'}).click();
  await page.getByRole('heading', {name: '代理人設定'}).waitFor();
  await page.getByRole('cell', {name: '陳代理老師'}).waitFor();
  await shot(page, 'staff-05-substitutes');

  // The school admin sets the term's windows (on the other demo school, whose uploads no scenario needs).
  const other = await open();
  await signIn(other, {school: '999002', username: 'admin', password});
  await other.getByRole('link', {name: '期程'}).click();
  await other.getByRole('heading', {name: '學期期程'}).waitFor();
  await other.getByText('學校尚未設定本學期期程').waitFor();
  await other.getByLabel('勾選 結束').fill('2024-02-29T12:00');
  const saved = other.waitForResponse(r => r.url().includes('/scheduling/schools/999002/terms/11201') && r.request().method() === 'PUT');
  await other.getByRole('button', {name: '儲存期程'}).click();
  check([200, 201].includes((await saved).status()), 'the schedule was saved');
  await other.locator('#status').getByText('期程已儲存。').waitFor();
  await other.getByText('學校尚未設定本學期期程').waitFor({state: 'detached'}); // re-rendered: the school's own now
  check(await other.getByLabel('勾選 結束').inputValue() === '2024-02-29T12:00', 'the new end shows');
  const ics = other.waitForEvent('download');
  await other.getByRole('button', {name: '下載行事曆（.ics）'}).click();
  const calendar = await (await import('node:fs/promises')).readFile(await (await ics).path(), 'utf-8');
  check(calendar.startsWith('BEGIN:VCALENDAR'), 'the calendar feed downloads');
  await shot(other, 'staff-06-windows-set');
  step('windows set by the school admin');
});
